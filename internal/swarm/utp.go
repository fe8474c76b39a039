package swarm

import (
	"encoding/binary"
	"time"
)

// uTP (BEP 29) header types.
const (
	utpData  = 0
	utpFin   = 1
	utpState = 2
	utpReset = 3
	utpSyn   = 4

	utpHeaderLen = 20
)

// IsUTP reports whether a datagram on the shared UDP port is a uTP v1
// packet rather than DHT traffic (the DHT takes only 'd'...'e' datagrams,
// dht-swarm §1).
func IsUTP(b []byte) bool {
	return len(b) >= utpHeaderLen && b[0]&0x0f == 1 && b[0]>>4 <= utpSyn
}

// UTPReset answers a uTP ST_SYN with an ST_RESET, so that a twisterd
// dialing us over uTP (it always tries uTP first, dht-swarm §4.2) falls
// back to TCP at once instead of after its 3 s connect timeout.
//
// libtorrent matches the reset to its connecting socket by (source
// endpoint, connection_id == its recv_id) [lt/src/utp_socket_manager.cpp:
// incoming_packet, utp_match]; the SYN carries that recv_id as its
// connection_id [utp_stream.cpp: send_syn]. An ST_RESET sets
// connection_reset before any ack check [utp_stream.cpp: incoming_packet],
// the connect handler fails, and peer_connection marks the peer
// non-uTP and reconnects over TCP immediately [peer_connection.cpp:
// connect_failed]. The reply must leave from the UDP port the SYN was
// sent to (the DHT socket): the DHT owner calls this for non-DHT
// datagrams and sends the result back to the sender.
//
// It returns nil for anything that is not a SYN: resets for other packet
// types could tear down uTP connections of other software.
func UTPReset(syn []byte, now time.Time) []byte {
	if !IsUTP(syn) || syn[0]>>4 != utpSyn {
		return nil
	}
	connID := binary.BigEndian.Uint16(syn[2:4])
	theirTS := binary.BigEndian.Uint32(syn[4:8])
	seq := binary.BigEndian.Uint16(syn[16:18])
	ours := uint32(now.UnixMicro())
	r := make([]byte, utpHeaderLen)
	r[0] = utpReset<<4 | 1
	r[1] = 0 // no extensions
	binary.BigEndian.PutUint16(r[2:], connID)
	binary.BigEndian.PutUint32(r[4:], ours)
	binary.BigEndian.PutUint32(r[8:], ours-theirTS)
	binary.BigEndian.PutUint32(r[12:], 0) // wnd_size
	binary.BigEndian.PutUint16(r[16:], uint16(ours))
	binary.BigEndian.PutUint16(r[18:], seq)
	return r
}
