// Package twproto holds twister's protocol values, byte-exact with twisterd
// (twister-core 0.9.40): private keys and WIF, the signed-message hash and
// 65-byte compact signatures, ECIES envelopes of direct messages, userposts
// and their acceptance rules, DM payloads, DHT target hashes and signed DHT
// items, and "hexcape", the JSON rendering twisterd uses for posts.
//
// Spec references (§N) are to shared/spec/posts-dm-groups-rpc.md unless
// marked dht-swarm. The package is pure: no I/O, no clocks, no storage. What
// it needs from the outside (the user registry) comes through KeySource.
package twproto
