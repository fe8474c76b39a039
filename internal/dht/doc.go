// Package dht is twgroupd's twister DHT node: the KRPC dialect of twisterd
// (keys z/x, camelCase methods, dict targets; dht-swarm §2), the UDP
// transport with transaction matching and timeouts, the routing table with
// twister's node-id and IP rules, write tokens, the signed item store with
// twisterd's single/multi rules, the announce (peer) store, the lookups
// (bootstrap, getData, putData, announce), republishing and persistence.
//
// It owns the DHT wire and the DHT's own state (dht.db in the datadir). It
// does not know what posts mean, holds no private keys (signing goes through
// Signer) and has no chain (user keys and heights come from a
// twproto.KeySource).
package dht
