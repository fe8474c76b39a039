package dht

import "net/netip"

// KnownNodes lists up to max confirmed nodes of the routing table, closest
// to our id first. The node uses them as blockchain peer candidates at
// port - 1000 when it has no chain peer (twister.cpp
// ThreadMaintainDHTNodes).
func (n *Node) KnownNodes(max int) []netip.AddrPort {
	infos := n.table.closest(n.table.ownID(), max, true)
	out := make([]netip.AddrPort, 0, len(infos))
	for _, ni := range infos {
		out = append(out, ni.Addr)
	}
	return out
}
