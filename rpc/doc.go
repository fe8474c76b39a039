// Package rpc serves twisterd's JSON-RPC 1.0 over HTTP (spec
// posts-dm-groups-rpc §8): basic auth, loopback binding unless rpcallowip,
// the {"result","error","id"} envelope with twisterd's codes and HTTP status
// mapping, batches, the method table with help, forwarding of unknown methods
// to an upstream twisterd, twister-html's static files and a websocket feed
// of newly received messages.
//
// It owns the HTTP conversation and the mapping of errors to JSON-RPC codes.
// It must not touch storage, keys or the network directly: every method calls
// a small interface defined here (backends.go) that the node wires to the dm
// engine, the group-chat service, the wallet, the registry, the DHT and the
// swarm.
package rpc
