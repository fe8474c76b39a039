package chainwire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Command names.
const (
	CmdVersion    = "version"
	CmdVerack     = "verack"
	CmdPing       = "ping"
	CmdPong       = "pong"
	CmdGetAddr    = "getaddr"
	CmdAddr       = "addr"
	CmdGetHeaders = "getheaders"
	CmdHeaders    = "headers"
	CmdGetBlocks  = "getblocks"
	CmdInv        = "inv"
	CmdGetData    = "getdata"
	CmdNotFound   = "notfound"
	CmdBlock      = "block"
	CmdTx         = "tx"
	CmdCP         = "cp"
	CmdMempool    = "mempool"
)

// Inventory types (protocol.h).
const (
	InvTx    uint32 = 1
	InvBlock uint32 = 2
)

// Message is one decoded P2P message.
type Message interface {
	Command() string
	// Encode appends the payload to dst.
	Encode(dst []byte) []byte
}

// Decode decodes payload as the message cmd names. Unknown commands give
// *MsgUnknown; a known command with a bad payload is an error wrapping
// ErrMalformed (or ErrTooLarge).
func Decode(cmd string, payload []byte) (Message, error) {
	r := &reader{b: payload}
	var m Message
	switch cmd {
	case CmdVersion:
		m = readVersion(r)
	case CmdVerack:
		m = &MsgVerack{}
	case CmdGetAddr:
		m = &MsgGetAddr{}
	case CmdMempool:
		m = &MsgMempool{}
	case CmdPing:
		p := &MsgPing{}
		if len(payload) > 0 { // pre-BIP31 pings carry no nonce
			p.Nonce, p.HasNonce = r.u64(), true
		}
		m = p
	case CmdPong:
		m = &MsgPong{Nonce: r.u64()}
	case CmdAddr:
		m = readAddr(r)
	case CmdGetHeaders:
		m = &MsgGetHeaders{readLocator(r)}
	case CmdGetBlocks:
		m = &MsgGetBlocks{readLocator(r)}
	case CmdHeaders:
		m = readHeaders(r)
	case CmdInv:
		m = &MsgInv{readInv(r)}
	case CmdGetData:
		m = &MsgGetData{readInv(r)}
	case CmdNotFound:
		m = &MsgNotFound{readInv(r)}
	case CmdBlock:
		b, err := ParseBlock(payload)
		if err != nil {
			return nil, fmt.Errorf("decode block: %w", err)
		}
		return &MsgBlock{Block: b}, nil
	case CmdTx:
		if len(payload) > MaxTxSize {
			return nil, fmt.Errorf("decode tx: %w: %d bytes", ErrTooLarge, len(payload))
		}
		m = &MsgTx{Tx: readTx(r)}
	case CmdCP:
		m = &MsgCP{
			Height:   int32(r.u32()),
			Hash:     r.hash(),
			Username: r.varBytes(64, "cp username"),
			Sign:     r.varBytes(128, "cp signature"),
		}
	default:
		return &MsgUnknown{Cmd: cmd, Payload: append([]byte(nil), payload...)}, nil
	}
	if err := r.done(cmd); err != nil {
		return nil, fmt.Errorf("decode %s: %w", cmd, err)
	}
	return m, nil
}

// NetAddr is a CAddress without its time: services, IPv6(-mapped) address,
// big-endian port (26 bytes).
type NetAddr struct {
	Services uint64
	IP       [16]byte
	Port     uint16
}

// NewNetAddr builds a NetAddr from an address and port.
func NewNetAddr(services uint64, ap netip.AddrPort) NetAddr {
	return NetAddr{Services: services, IP: ap.Addr().As16(), Port: ap.Port()}
}

// AddrPort is the address as a netip.AddrPort (IPv4-mapped addresses unmapped).
func (a NetAddr) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(a.IP).Unmap(), a.Port)
}

func (a NetAddr) appendTo(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, a.Services)
	dst = append(dst, a.IP[:]...)
	return binary.BigEndian.AppendUint16(dst, a.Port)
}

func readNetAddr(r *reader) NetAddr {
	var a NetAddr
	a.Services = r.u64()
	copy(a.IP[:], r.bytes(16))
	if b := r.bytes(2); b != nil {
		a.Port = binary.BigEndian.Uint16(b)
	}
	return a
}

// MsgVersion opens a connection.
type MsgVersion struct {
	Version     int32
	Services    uint64
	Timestamp   int64
	AddrRecv    NetAddr
	AddrFrom    NetAddr
	Nonce       uint64
	UserAgent   string
	StartHeight int32
	Relay       bool
	HasRelay    bool // the optional relay byte was present
}

// MaxUserAgent bounds the user agent (bitcoin's MAX_SUBVERSION_LENGTH).
const MaxUserAgent = 256

func (*MsgVersion) Command() string { return CmdVersion }
func (m *MsgVersion) Encode(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(m.Version))
	dst = binary.LittleEndian.AppendUint64(dst, m.Services)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.Timestamp))
	dst = m.AddrRecv.appendTo(dst)
	dst = m.AddrFrom.appendTo(dst)
	dst = binary.LittleEndian.AppendUint64(dst, m.Nonce)
	dst = AppendVarBytes(dst, []byte(m.UserAgent))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(m.StartHeight))
	if m.HasRelay {
		relay := byte(0)
		if m.Relay {
			relay = 1
		}
		dst = append(dst, relay)
	}
	return dst
}

func readVersion(r *reader) *MsgVersion {
	m := &MsgVersion{
		Version:   int32(r.u32()),
		Services:  r.u64(),
		Timestamp: int64(r.u64()),
		AddrRecv:  readNetAddr(r),
		AddrFrom:  readNetAddr(r),
		Nonce:     r.u64(),
	}
	m.UserAgent = string(r.varBytes(MaxUserAgent, "user agent"))
	m.StartHeight = int32(r.u32())
	if r.err == nil && r.off < len(r.b) {
		m.HasRelay = true
		m.Relay = r.u8() != 0
	}
	return m
}

// MsgVerack acknowledges a version.
type MsgVerack struct{}

func (*MsgVerack) Command() string          { return CmdVerack }
func (*MsgVerack) Encode(dst []byte) []byte { return dst }

// MsgGetAddr asks for addresses.
type MsgGetAddr struct{}

func (*MsgGetAddr) Command() string          { return CmdGetAddr }
func (*MsgGetAddr) Encode(dst []byte) []byte { return dst }

// MsgMempool asks for the mempool's inv (ignored by a light client).
type MsgMempool struct{}

func (*MsgMempool) Command() string          { return CmdMempool }
func (*MsgMempool) Encode(dst []byte) []byte { return dst }

// MsgPing carries a nonce the peer echoes in a pong (BIP31).
type MsgPing struct {
	Nonce    uint64
	HasNonce bool
}

func (*MsgPing) Command() string { return CmdPing }
func (m *MsgPing) Encode(dst []byte) []byte {
	if !m.HasNonce {
		return dst
	}
	return binary.LittleEndian.AppendUint64(dst, m.Nonce)
}

// MsgPong answers a ping.
type MsgPong struct{ Nonce uint64 }

func (*MsgPong) Command() string            { return CmdPong }
func (m *MsgPong) Encode(dst []byte) []byte { return binary.LittleEndian.AppendUint64(dst, m.Nonce) }

// TimedAddr is an addr entry: a uint32 time then the 26-byte address.
type TimedAddr struct {
	Time uint32
	NetAddr
}

// MsgAddr advertises peers.
type MsgAddr struct{ Addrs []TimedAddr }

func (*MsgAddr) Command() string { return CmdAddr }
func (m *MsgAddr) Encode(dst []byte) []byte {
	dst = AppendCompactSize(dst, uint64(len(m.Addrs)))
	for _, a := range m.Addrs {
		dst = binary.LittleEndian.AppendUint32(dst, a.Time)
		dst = a.appendTo(dst)
	}
	return dst
}

func readAddr(r *reader) *MsgAddr {
	n := r.count(MaxAddr, 30, "addresses")
	m := &MsgAddr{}
	for i := 0; i < n && r.err == nil; i++ {
		m.Addrs = append(m.Addrs, TimedAddr{Time: r.u32(), NetAddr: readNetAddr(r)})
	}
	return m
}

// Locator is the body of getheaders and getblocks: a protocol version, block
// hashes from the tip back to genesis, and a stop hash (zero: as many as the
// peer sends).
type Locator struct {
	Version int32
	Hashes  []Hash
	Stop    Hash
}

func (l *Locator) appendTo(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(l.Version))
	dst = AppendCompactSize(dst, uint64(len(l.Hashes)))
	for _, h := range l.Hashes {
		dst = append(dst, h[:]...)
	}
	return append(dst, l.Stop[:]...)
}

func readLocator(r *reader) Locator {
	l := Locator{Version: int32(r.u32())}
	n := r.count(MaxLocator, 32, "locator hashes")
	for i := 0; i < n && r.err == nil; i++ {
		l.Hashes = append(l.Hashes, r.hash())
	}
	l.Stop = r.hash()
	return l
}

// MsgGetHeaders asks for up to 2000 headers after the locator.
type MsgGetHeaders struct{ Locator }

func (*MsgGetHeaders) Command() string            { return CmdGetHeaders }
func (m *MsgGetHeaders) Encode(dst []byte) []byte { return m.appendTo(dst) }

// MsgGetBlocks asks for an inv of up to 500 blocks after the locator.
type MsgGetBlocks struct{ Locator }

func (*MsgGetBlocks) Command() string            { return CmdGetBlocks }
func (m *MsgGetBlocks) Encode(dst []byte) []byte { return m.appendTo(dst) }

// MsgHeaders carries headers, each followed by a zero tx count (85 bytes).
type MsgHeaders struct{ Headers []BlockHeader }

func (*MsgHeaders) Command() string { return CmdHeaders }
func (m *MsgHeaders) Encode(dst []byte) []byte {
	dst = AppendCompactSize(dst, uint64(len(m.Headers)))
	for i := range m.Headers {
		b := m.Headers[i].Bytes()
		dst = append(append(dst, b[:]...), 0)
	}
	return dst
}

func readHeaders(r *reader) *MsgHeaders {
	n := r.count(MaxHeaders, BlockHeaderSize+1, "headers")
	m := &MsgHeaders{}
	if n > 0 {
		m.Headers = make([]BlockHeader, 0, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		m.Headers = append(m.Headers, readHeader(r))
		if txs := r.compactSize(); r.err == nil && txs != 0 {
			r.fail("header %d with %d transactions", i, txs)
		}
	}
	return m
}

// InvVect is an inventory item.
type InvVect struct {
	Type uint32
	Hash Hash
}

func appendInv(dst []byte, items []InvVect) []byte {
	dst = AppendCompactSize(dst, uint64(len(items)))
	for _, it := range items {
		dst = binary.LittleEndian.AppendUint32(dst, it.Type)
		dst = append(dst, it.Hash[:]...)
	}
	return dst
}

func readInv(r *reader) []InvVect {
	n := r.count(MaxInv, 36, "inventory items")
	var out []InvVect
	if n > 0 {
		out = make([]InvVect, 0, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		out = append(out, InvVect{Type: r.u32(), Hash: r.hash()})
	}
	return out
}

// MsgInv announces inventory.
type MsgInv struct{ Items []InvVect }

func (*MsgInv) Command() string            { return CmdInv }
func (m *MsgInv) Encode(dst []byte) []byte { return appendInv(dst, m.Items) }

// MsgGetData requests inventory.
type MsgGetData struct{ Items []InvVect }

func (*MsgGetData) Command() string            { return CmdGetData }
func (m *MsgGetData) Encode(dst []byte) []byte { return appendInv(dst, m.Items) }

// MsgNotFound answers a getdata for items the peer lacks.
type MsgNotFound struct{ Items []InvVect }

func (*MsgNotFound) Command() string            { return CmdNotFound }
func (m *MsgNotFound) Encode(dst []byte) []byte { return appendInv(dst, m.Items) }

// MsgBlock carries one block.
type MsgBlock struct{ Block *Block }

func (*MsgBlock) Command() string            { return CmdBlock }
func (m *MsgBlock) Encode(dst []byte) []byte { return m.Block.AppendTo(dst) }

// MsgTx relays one transaction.
type MsgTx struct{ Tx Tx }

func (*MsgTx) Command() string            { return CmdTx }
func (m *MsgTx) Encode(dst []byte) []byte { return m.Tx.AppendTo(dst) }

// MsgCP is a soft-checkpoint vote (softcheckpoint.h CSoftCheckpoint).
type MsgCP struct {
	Height   int32
	Hash     Hash
	Username []byte
	Sign     []byte
}

func (*MsgCP) Command() string { return CmdCP }
func (m *MsgCP) Encode(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(m.Height))
	dst = append(dst, m.Hash[:]...)
	dst = AppendVarBytes(dst, m.Username)
	return AppendVarBytes(dst, m.Sign)
}

// MsgUnknown is a command this package does not decode (dht*, alert, ...).
type MsgUnknown struct {
	Cmd     string
	Payload []byte
}

func (m *MsgUnknown) Command() string          { return m.Cmd }
func (m *MsgUnknown) Encode(dst []byte) []byte { return append(dst, m.Payload...) }
