package devnet

import (
	"fmt"
	"math/rand/v2"
)

// LoopbackIP is node i's own address on the loopback network: 127.0.0.10,
// .11, ... (then 127.0.1.x), so per-address rules (one connection per IP
// per swarm, one DHT node per IP) apply between nodes as between hosts.
func LoopbackIP(i int) string {
	j := i + 10 // 127.0.0.1 stays for RPC and tools
	if j < 250 {
		return fmt.Sprintf("127.0.0.%d", j)
	}
	return fmt.Sprintf("127.0.%d.%d", j/240, 10+j%240)
}

// bootstrapPeers is whom a new node bootstraps from: the first node and up
// to 3 random other earlier ones, as a node joining a real network knows a
// few addresses, not all.
func bootstrapPeers(prev []*Node) []*Node {
	if len(prev) <= 4 {
		return prev
	}
	out := []*Node{prev[0]}
	for _, i := range rand.Perm(len(prev) - 1)[:3] {
		out = append(out, prev[i+1])
	}
	return out
}
