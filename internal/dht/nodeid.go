package dht

import (
	"crypto/rand"
	"crypto/sha1"
	"net/netip"

	"github.com/anacrolix/dht/v2/int160"
	"github.com/anacrolix/dht/v2/krpc"
)

// twisterd's node ids follow libtorrent 0.16's SHA-1 scheme, not BEP 42
// (dht-swarm §2.7, node_id.cpp generate_id_impl / verify_id).
var (
	v4IDMask = [4]byte{0x01, 0x07, 0x1f, 0x7f}
	v6IDMask = [8]byte{0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff}
)

// idPrefix is SHA1(masked ip || r&7), whose first 4 bytes an id must carry.
func idPrefix(ip netip.Addr, r byte) [20]byte {
	var buf [9]byte
	var n int
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		for i := range b {
			buf[i] = b[i] & v4IDMask[i]
		}
		n = 4
	} else {
		b := ip.As16()
		for i := 0; i < 8; i++ {
			buf[i] = b[i] & v6IDMask[i]
		}
		n = 8
	}
	buf[n] = r & 7
	return sha1.Sum(buf[:n+1])
}

// GenerateID makes a node id valid for the external address ip.
func GenerateID(ip netip.Addr) krpc.ID {
	var id krpc.ID
	rand.Read(id[:])
	if !ip.IsValid() {
		return id
	}
	h := idPrefix(ip, id[19])
	copy(id[:4], h[:4])
	return id
}

// VerifyID reports whether id is acceptable from source ip: local addresses
// are exempt, others must carry the 32-bit hash prefix.
func VerifyID(id krpc.ID, ip netip.Addr) bool {
	if isLocalAddr(ip) {
		return true
	}
	h := idPrefix(ip, id[19])
	return [4]byte(h[:4]) == [4]byte(id[:4])
}

// isLocalAddr is libtorrent's is_local: RFC 1918, link-local and loopback.
func isLocalAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsPrivate() && ip.Is4() || ip.IsLoopback() || ip.IsLinkLocalUnicast()
}

// distance is the XOR metric, via anacrolix's int160.
func distance(a, b krpc.ID) int160.T {
	return int160.Distance(int160.FromByteArray(a), int160.FromByteArray(b))
}

// closer reports whether a is strictly closer to target than b.
func closer(target, a, b krpc.ID) bool {
	return distance(a, target).Cmp(distance(b, target)) < 0
}

// commonPrefixLen is the number of leading bits id shares with own.
func commonPrefixLen(own, id krpc.ID) int {
	d := distance(own, id)
	return 160 - d.BitLen()
}

// randomIDInBucket returns an id sharing exactly cpl leading bits with own.
func randomIDInBucket(own krpc.ID, cpl int) krpc.ID {
	var id krpc.ID
	rand.Read(id[:])
	if cpl >= 160 {
		return own
	}
	t := int160.FromByteArray(id)
	o := int160.FromByteArray(own)
	for i := 0; i < cpl; i++ {
		t.SetBit(i, o.GetBit(i))
	}
	t.SetBit(cpl, !o.GetBit(cpl))
	return krpc.ID(t.AsByteArray())
}
