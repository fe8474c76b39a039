package swarm

import (
	"bufio"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/anacrolix/torrent/bencode"
)

// Peer-wire constants (dht-swarm §4.3, §4.5).
const (
	protocolString = "\x13twister protocollll"
	// HandshakeLen is the size of the fixed peer-wire handshake.
	HandshakeLen = 68
	// BlockSize is twister's nominal piece and block size; requests are
	// always (k, 0, BlockSize) and a piece never carries more (§4.6).
	BlockSize = 16384
	// MaxPostSize is the largest post acceptSignedPost allows (spec §3.3).
	MaxPostSize = 2048
	// MaxMessageLen bounds one framed message. twisterd allows 1 MiB, but
	// nothing it sends comes close: a piece is 9+16384 bytes and a bitfield
	// of a user at the post-number bound of a 10-year chain is < 70 KiB.
	MaxMessageLen = 128 << 10
)

// Message ids. 10 and 11 are twister's hashcash (PEEK) messages.
const (
	MsgChoke         byte = 0
	MsgUnchoke       byte = 1
	MsgInterested    byte = 2
	MsgNotInterested byte = 3
	MsgHave          byte = 4
	MsgBitfield      byte = 5
	MsgRequest       byte = 6
	MsgPiece         byte = 7
	MsgCancel        byte = 8
	MsgPort          byte = 9
	MsgHashcashNBits byte = 10
	MsgHashcashNonce byte = 11
	MsgSuggest       byte = 13
	MsgHaveAll       byte = 14
	MsgHaveNone      byte = 15
	MsgReject        byte = 16
	MsgAllowedFast   byte = 17
	MsgExtended      byte = 20
)

// Extended-message ids we advertise in our extended handshake `m`. They
// are twisterd's numbers; we list only extensions we understand, because
// twisterd sends an extension's messages only when we list it (§4.5).
const (
	extHandshake  byte = 0
	extUTPex      byte = 1
	extLTDonthave byte = 7
	extTwgSwarms  byte = 20 // twgroupd's twg_swarms (crossswarm.go)
)

// Reserved bits exactly as twisterd sets them: extension protocol
// (byte 5, 0x10), DHT port 0x01 + FAST 0x04 + PEEK 0x10 (byte 7). Observed
// as 00 00 00 00 00 10 00 15 on every captured connection (wire README).
var twisterReserved = [8]byte{0, 0, 0, 0, 0, 0x10, 0, 0x15}

// Errors returned by the codec.
var (
	ErrBadProtocol   = errors.New("peer wire: not the twister protocol")
	ErrMessageTooBig = errors.New("peer wire: message too large")
	ErrBadMessage    = errors.New("peer wire: malformed message")
	ErrUnknownID     = errors.New("peer wire: unknown message id")
)

// Handshake is the 68-byte opening of a connection (§4.3).
type Handshake struct {
	Reserved [8]byte
	InfoHash [20]byte
	PeerID   [20]byte
}

// SupportsExtensions reports the BEP 10 bit.
func (h Handshake) SupportsExtensions() bool { return h.Reserved[5]&0x10 != 0 }

// SupportsFast reports the BEP 6 bit; FAST-only messages need it.
func (h Handshake) SupportsFast() bool { return h.Reserved[7]&0x04 != 0 }

// SupportsDHT reports the PORT-message bit.
func (h Handshake) SupportsDHT() bool { return h.Reserved[7]&0x01 != 0 }

// AppendTo appends the 68 handshake bytes.
func (h Handshake) AppendTo(b []byte) []byte {
	b = append(b, protocolString...)
	b = append(b, h.Reserved[:]...)
	b = append(b, h.InfoHash[:]...)
	return append(b, h.PeerID[:]...)
}

// ParseHandshake parses exactly HandshakeLen bytes.
func ParseHandshake(b []byte) (Handshake, error) {
	var h Handshake
	if len(b) != HandshakeLen {
		return h, fmt.Errorf("%w: handshake length %d", ErrBadMessage, len(b))
	}
	if string(b[:20]) != protocolString {
		return h, ErrBadProtocol
	}
	copy(h.Reserved[:], b[20:28])
	copy(h.InfoHash[:], b[28:48])
	copy(h.PeerID[:], b[48:68])
	return h, nil
}

// Message is one decoded length-prefixed peer-wire message. Which fields
// are meaningful depends on ID; KeepAlive marks a zero-length message.
type Message struct {
	KeepAlive bool
	ID        byte
	Index     uint32 // have, request, piece, cancel, reject, suggest, allowed_fast
	Begin     uint32 // request, piece, cancel, reject
	Length    uint32 // request, cancel, reject
	Data      []byte // piece data, bitfield bits, hashcash nonce, extended body
	Port      uint16 // port
	NBits     uint16 // hashcash_nbits
	ExtID     byte   // extended
}

// AppendTo appends the framed message (length prefix included).
func (m Message) AppendTo(b []byte) []byte {
	if m.KeepAlive {
		return append(b, 0, 0, 0, 0)
	}
	start := len(b)
	b = append(b, 0, 0, 0, 0, m.ID)
	switch m.ID {
	case MsgHave, MsgSuggest, MsgAllowedFast:
		b = binary.BigEndian.AppendUint32(b, m.Index)
	case MsgRequest, MsgCancel, MsgReject:
		b = binary.BigEndian.AppendUint32(b, m.Index)
		b = binary.BigEndian.AppendUint32(b, m.Begin)
		b = binary.BigEndian.AppendUint32(b, m.Length)
	case MsgPiece:
		b = binary.BigEndian.AppendUint32(b, m.Index)
		b = binary.BigEndian.AppendUint32(b, m.Begin)
		b = append(b, m.Data...)
	case MsgBitfield, MsgHashcashNonce:
		b = append(b, m.Data...)
	case MsgPort:
		b = binary.BigEndian.AppendUint16(b, m.Port)
	case MsgHashcashNBits:
		b = binary.BigEndian.AppendUint16(b, m.NBits)
	case MsgExtended:
		b = append(b, m.ExtID)
		b = append(b, m.Data...)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
}

// ParseMessage decodes the body of one message (everything after the
// 4-byte length prefix). Lengths are enforced exactly as twisterd does
// (§4.5); unknown ids are an error because twisterd disconnects on them.
// Data aliases body.
func ParseMessage(body []byte) (Message, error) {
	if len(body) == 0 {
		return Message{KeepAlive: true}, nil
	}
	if len(body) > MaxMessageLen {
		return Message{}, ErrMessageTooBig
	}
	m := Message{ID: body[0]}
	p := body[1:]
	exact := func(n int) error {
		if len(p) != n {
			return fmt.Errorf("%w: id %d with %d payload bytes, want %d", ErrBadMessage, m.ID, len(p), n)
		}
		return nil
	}
	var err error
	switch m.ID {
	case MsgChoke, MsgUnchoke, MsgInterested, MsgNotInterested, MsgHaveAll, MsgHaveNone:
		err = exact(0)
	case MsgHave, MsgSuggest, MsgAllowedFast:
		if err = exact(4); err == nil {
			m.Index = binary.BigEndian.Uint32(p)
		}
	case MsgRequest, MsgCancel, MsgReject:
		if err = exact(12); err == nil {
			m.Index = binary.BigEndian.Uint32(p)
			m.Begin = binary.BigEndian.Uint32(p[4:])
			m.Length = binary.BigEndian.Uint32(p[8:])
		}
	case MsgPiece:
		if len(p) < 8 || len(p)-8 > BlockSize {
			return m, fmt.Errorf("%w: piece with %d payload bytes", ErrBadMessage, len(p))
		}
		m.Index = binary.BigEndian.Uint32(p)
		m.Begin = binary.BigEndian.Uint32(p[4:])
		m.Data = p[8:]
	case MsgBitfield:
		m.Data = p
	case MsgPort:
		if err = exact(2); err == nil {
			m.Port = binary.BigEndian.Uint16(p)
		}
	case MsgHashcashNBits:
		if err = exact(2); err == nil {
			m.NBits = binary.BigEndian.Uint16(p)
		}
	case MsgHashcashNonce:
		if len(p) > 10 {
			return m, fmt.Errorf("%w: hashcash nonce of %d bytes", ErrBadMessage, len(p))
		}
		m.Data = p
	case MsgExtended:
		if len(p) < 1 {
			return m, fmt.Errorf("%w: empty extended message", ErrBadMessage)
		}
		m.ExtID = p[0]
		m.Data = p[1:]
	default:
		return m, fmt.Errorf("%w: %d", ErrUnknownID, m.ID)
	}
	return m, err
}

// needsFast reports whether twisterd requires FAST to be negotiated for id.
func needsFast(id byte) bool {
	return id >= MsgSuggest && id <= MsgAllowedFast
}

// messageReader reads framed messages with one reusable, bounded buffer.
type messageReader struct {
	r   *bufio.Reader
	buf []byte
}

func newMessageReader(r io.Reader) *messageReader {
	return &messageReader{r: bufio.NewReaderSize(r, 32<<10)}
}

// next returns the next message; its Data is valid until the next call.
func (mr *messageReader) next() (Message, int, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(mr.r, hdr[:]); err != nil {
		return Message{}, 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessageLen {
		return Message{}, 4, fmt.Errorf("%w: %d bytes", ErrMessageTooBig, n)
	}
	if cap(mr.buf) < int(n) {
		mr.buf = make([]byte, n, max(int(n), 512))
	}
	body := mr.buf[:n]
	if _, err := io.ReadFull(mr.r, body); err != nil {
		return Message{}, 4, err
	}
	m, err := ParseMessage(body)
	return m, 4 + int(n), err
}

// ExtHandshake is the BEP 10 handshake (ext-id 0) with the keys twisterd
// sends (§4.4 and wire README observation 8).
type ExtHandshake struct {
	M           map[string]int `bencode:"m"`
	Port        int            `bencode:"p,omitempty"`
	Version     string         `bencode:"v,omitempty"`
	YourIP      string         `bencode:"yourip,omitempty"`
	Reqq        int            `bencode:"reqq,omitempty"`
	CompleteAgo *int           `bencode:"complete_ago,omitempty"`
}

// ParseExtHandshake decodes an extended handshake body leniently: unknown
// keys (tr, ipv6, ...) are ignored.
func ParseExtHandshake(b []byte) (ExtHandshake, error) {
	var h ExtHandshake
	if err := bencode.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("%w: extended handshake: %v", ErrBadMessage, err)
	}
	if h.Port < 0 || h.Port > 65535 {
		return h, fmt.Errorf("%w: extended handshake port %d", ErrBadMessage, h.Port)
	}
	return h, nil
}

// Bytes bencodes the handshake (sorted keys, as libtorrent writes them).
func (h ExtHandshake) Bytes() ([]byte, error) { return bencode.Marshal(h) }

// pexMessage is the part of ut_pex (BEP 11) we use: IPv4 peers added.
type pexMessage struct {
	Added   string `bencode:"added"`
	AddedF  string `bencode:"added.f"`
	Dropped string `bencode:"dropped"`
}

// PexBytes encodes a ut_pex body announcing IPv4 peers (at most
// maxPexPeers; others are skipped).
func PexBytes(peers []netip.AddrPort) ([]byte, error) {
	var added []byte
	n := 0
	for _, p := range peers {
		a := p.Addr().Unmap()
		if !a.Is4() || p.Port() == 0 || n == maxPexPeers {
			continue
		}
		ip := a.As4()
		added = binary.BigEndian.AppendUint16(append(added, ip[:]...), p.Port())
		n++
	}
	return bencode.Marshal(pexMessage{Added: string(added), AddedF: string(make([]byte, n))})
}

// maxPexPeers bounds one ut_pex message; libtorrent sends at most 100.
const maxPexPeers = 100

// ParsePex returns the IPv4 peers listed as added in a ut_pex body.
func ParsePex(b []byte) ([]netip.AddrPort, error) {
	var m pexMessage
	if err := bencode.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: ut_pex: %v", ErrBadMessage, err)
	}
	if len(m.Added)%6 != 0 {
		return nil, fmt.Errorf("%w: ut_pex added has %d bytes", ErrBadMessage, len(m.Added))
	}
	var peers []netip.AddrPort
	for i := 0; i+6 <= len(m.Added) && len(peers) < maxPexPeers; i += 6 {
		a := [4]byte([]byte(m.Added[i : i+4]))
		port := binary.BigEndian.Uint16([]byte(m.Added[i+4 : i+6]))
		if port == 0 {
			continue
		}
		peers = append(peers, netip.AddrPortFrom(netip.AddrFrom4(a), port))
	}
	return peers, nil
}

// bitfieldBytes is twisterd's bitfield size for a swarm whose highest held
// piece is lastHave: num_pieces = lastHave+2 ("+2" rule, §4.6), so the
// sender never looks like a seed.
func bitfieldBytes(lastHave int64) int {
	if lastHave < 0 {
		return 0
	}
	return int((lastHave + 2 + 7) / 8)
}

// allowedFastSet is libtorrent's allowed-fast set (BEP 6 without masking
// the IP, allowed_fast_set_size 10): every index when numPieces <= 10,
// else indices taken from chained SHA-1 of (peer IPv4 || info-hash)
// [lt/src/peer_connection.cpp: send_allowed_set]. twisterd does not skip
// pieces the peer has because it has not read the peer's bitfield yet
// (wire README observation 3).
func allowedFastSet(peer netip.Addr, infoHash [20]byte, numPieces int) []uint32 {
	const setSize = 10
	if numPieces <= 0 {
		return nil
	}
	if numPieces <= setSize {
		out := make([]uint32, numPieces)
		for i := range out {
			out[i] = uint32(i)
		}
		return out
	}
	ip := peer.Unmap().AsSlice()
	h := sha1.Sum(append(append([]byte(nil), ip...), infoHash[:]...))
	var out []uint32
	for {
		for i := 0; i < 5; i++ {
			piece := binary.BigEndian.Uint32(h[i*4:]) % uint32(numPieces)
			dup := false
			for _, p := range out {
				if p == piece {
					dup = true
					break
				}
			}
			if dup {
				continue
			}
			out = append(out, piece)
			if len(out) == setSize {
				return out
			}
		}
		h = sha1.Sum(h[:])
	}
}

// twg_swarms is twgroupd's own BEP 10 extension (docs/swarm.md "Cross-swarm
// HAVE"): HAVEs and pieces of any swarm both ends hold, sent over a
// connection of one swarm. Each connection names one info-hash, and at 100
// follows under a cap of 72 connections most swarms have no connection at
// any moment; through this extension every connection carries news of all
// swarms. It is advertised in our extended handshake `m` and sent only to
// peers that advertised it: twisterd never sees it.
const xswarmName = "twg_swarms"

// Bounds of one twg_swarms message.
const (
	xRefLen     = 24  // info-hash + 4-byte piece index
	maxXEntries = 256 // refs in one h, r or x list
)

// XRef names piece K of the swarm with info-hash IH. In a HAVE, Low also
// says that the sender holds every piece below it (pieces between Low and
// K it may or may not hold).
type XRef struct {
	IH  [20]byte
	K   int64
	Low int64
}

// XMessage is one twg_swarms message; any of its parts may be empty.
// Have: the sender holds the swarm up to K (its highest piece; -1, sent as
// 0xFFFFFFFF, for a swarm it runs and holds nothing of). Req: please
// send these pieces. Reject: these requests are refused. Piece with Data:
// one requested piece.
type XMessage struct {
	Have   []XRef
	Req    []XRef
	Reject []XRef
	Piece  *XRef
	Data   []byte
}

type xmessageWire struct {
	Have   string `bencode:"h,omitempty"`
	Low    string `bencode:"l,omitempty"` // 4 bytes per Have ref: its Low
	Req    string `bencode:"r,omitempty"`
	Reject string `bencode:"x,omitempty"`
	Piece  string `bencode:"p,omitempty"`
	Data   string `bencode:"d,omitempty"`
}

func appendRefs(b []byte, refs []XRef) []byte {
	for _, r := range refs {
		b = append(b, r.IH[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(r.K))
	}
	return b
}

// xNone as a HAVE's index: the sender holds the swarm and no piece of it
// yet (lastHave -1).
const xNone = 0xFFFFFFFF

func parseRefs(what, s string) ([]XRef, error) {
	if len(s)%xRefLen != 0 {
		return nil, fmt.Errorf("%w: twg_swarms %s has %d bytes, not a multiple of %d", ErrBadMessage, what, len(s), xRefLen)
	}
	if n := len(s) / xRefLen; n > maxXEntries {
		return nil, fmt.Errorf("%w: twg_swarms %s has %d entries, more than %d", ErrBadMessage, what, n, maxXEntries)
	}
	var refs []XRef
	for i := 0; i < len(s); i += xRefLen {
		var r XRef
		copy(r.IH[:], s[i:i+20])
		r.K = int64(binary.BigEndian.Uint32([]byte(s[i+20 : i+24])))
		if r.K == xNone && what == "have" {
			r.K = -1
		} else if r.K >= maxPieceIndex {
			return nil, fmt.Errorf("%w: twg_swarms %s piece %d beyond %d", ErrBadMessage, what, r.K, maxPieceIndex)
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// Bytes bencodes m. Lists longer than maxXEntries are an error: callers
// split them.
func (m XMessage) Bytes() ([]byte, error) {
	if len(m.Have) > maxXEntries || len(m.Req) > maxXEntries || len(m.Reject) > maxXEntries {
		return nil, fmt.Errorf("twg_swarms: more than %d entries", maxXEntries)
	}
	if len(m.Data) > BlockSize || (m.Piece == nil) != (m.Data == nil) {
		return nil, errors.New("twg_swarms: piece needs data of at most BlockSize bytes")
	}
	var lows []byte
	for _, r := range m.Have {
		lows = binary.BigEndian.AppendUint32(lows, uint32(r.Low))
	}
	w := xmessageWire{
		Have:   string(appendRefs(nil, m.Have)),
		Low:    string(lows),
		Req:    string(appendRefs(nil, m.Req)),
		Reject: string(appendRefs(nil, m.Reject)),
		Data:   string(m.Data),
	}
	if m.Piece != nil {
		w.Piece = string(appendRefs(nil, []XRef{*m.Piece}))
	}
	return bencode.Marshal(w)
}

// ParseXMessage decodes a twg_swarms body; unknown keys are ignored.
func ParseXMessage(b []byte) (XMessage, error) {
	var w xmessageWire
	var m XMessage
	if err := bencode.Unmarshal(b, &w); err != nil {
		return m, fmt.Errorf("%w: twg_swarms: %v", ErrBadMessage, err)
	}
	var err error
	if m.Have, err = parseRefs("have", w.Have); err != nil {
		return m, err
	}
	if w.Low != "" {
		if len(w.Low) != 4*len(m.Have) {
			return m, fmt.Errorf("%w: twg_swarms has %d lows for %d HAVEs", ErrBadMessage, len(w.Low)/4, len(m.Have))
		}
		for i := range m.Have {
			low := int64(binary.BigEndian.Uint32([]byte(w.Low[4*i : 4*i+4])))
			if low > m.Have[i].K+1 {
				return m, fmt.Errorf("%w: twg_swarms low %d above HAVE %d", ErrBadMessage, low, m.Have[i].K)
			}
			m.Have[i].Low = low
		}
	}
	if m.Req, err = parseRefs("request", w.Req); err != nil {
		return m, err
	}
	if m.Reject, err = parseRefs("reject", w.Reject); err != nil {
		return m, err
	}
	if w.Piece != "" || w.Data != "" {
		p, err := parseRefs("piece", w.Piece)
		if err != nil {
			return m, err
		}
		if len(p) != 1 {
			return m, fmt.Errorf("%w: twg_swarms piece names %d pieces, not 1", ErrBadMessage, len(p))
		}
		if len(w.Data) == 0 || len(w.Data) > BlockSize {
			return m, fmt.Errorf("%w: twg_swarms piece of %d bytes (1 to %d)", ErrBadMessage, len(w.Data), BlockSize)
		}
		m.Piece, m.Data = &p[0], []byte(w.Data)
	}
	return m, nil
}
