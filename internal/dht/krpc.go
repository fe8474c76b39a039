package dht

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

// Message types (the z key, dht-swarm §2.1).
const (
	typeQuery    = "q"
	typeResponse = "r"
	typeError    = "e"
)

// Method names twisterd answers (dht-swarm §2.3).
const (
	methodPing         = "ping"
	methodFindNode     = "findNode"
	methodGetData      = "getData"
	methodPutData      = "putData"
	methodAnnouncePeer = "announcePeer"
)

// clientVersion is the v key twisterd puts on every packet: "LT" 1.0.
var clientVersion = []byte("LT\x01\x00")

// errorCode is the only KRPC error code twisterd sends (node.cpp incoming_error).
const errorCode = 203

// Msg is one KRPC datagram in twister's dialect. Field tags give the
// canonical (sorted) key order anacrolix's encoder writes; nil fields are
// absent on the wire, empty non-nil ones are present (twisterd sends
// `nodes: ""` and `data: []`).
type Msg struct {
	E *KRPCError `bencode:"e,omitempty"`
	Q string     `bencode:"q,omitempty"`
	R *Return    `bencode:"r,omitempty"`
	T []byte     `bencode:"t"`
	V []byte     `bencode:"v,omitempty"`
	X *Args      `bencode:"x,omitempty"`
	Z string     `bencode:"z"`
}

// Args is the x dict of a query. Target is kept raw: a 20-byte string for
// findNode, a {n,r,t} dict for getData, whose exact bytes are hashed.
type Args struct {
	ID          []byte        `bencode:"id"`
	ImpliedPort *int64        `bencode:"implied_port,omitempty"`
	InfoHash    []byte        `bencode:"infoHash,omitempty"`
	JustToken   *int64        `bencode:"justtoken,omitempty"`
	N           []byte        `bencode:"n,omitempty"`
	NoSeed      *int64        `bencode:"noseed,omitempty"`
	P           bencode.Bytes `bencode:"p,omitempty"`
	Port        *int64        `bencode:"port,omitempty"`
	Seed        *int64        `bencode:"seed,omitempty"`
	SigP        []byte        `bencode:"sig_p,omitempty"`
	SigUser     []byte        `bencode:"sig_user,omitempty"`
	Target      bencode.Bytes `bencode:"target,omitempty"`
	Token       []byte        `bencode:"token,omitempty"`
}

// Return is the r dict of a response. Data elements are raw item dicts
// {p, sig_p, sig_user}.
type Return struct {
	Data      []bencode.Bytes `bencode:"data,omitempty"`
	Followers *int64          `bencode:"followers,omitempty"`
	ID        []byte          `bencode:"id"`
	IP        []byte          `bencode:"ip,omitempty"`
	N         []byte          `bencode:"n,omitempty"`
	Nodes     []byte          `bencode:"nodes,omitempty"`
	Nodes2    [][]byte        `bencode:"nodes2,omitempty"`
	Token     []byte          `bencode:"token,omitempty"`
	Values    [][]byte        `bencode:"values,omitempty"`
}

// KRPCError is the e list [code, message].
type KRPCError struct {
	Code int64
	Msg  string
}

func (e *KRPCError) Error() string { return fmt.Sprintf("dht error %d: %s", e.Code, e.Msg) }

// MarshalBencode writes [code, message].
func (e KRPCError) MarshalBencode() ([]byte, error) {
	b := fmt.Appendf(nil, "li%de%d:", e.Code, len(e.Msg))
	b = append(b, e.Msg...)
	return append(b, 'e'), nil
}

// Marshal encodes m canonically: by hand (issue #15: reflection was a
// fifth of a find_node reply's CPU), or through anacrolix for a message
// holding an empty raw value, whose encoding is anacrolix's business.
func (m *Msg) Marshal() ([]byte, error) {
	if b, ok := appendMsg(make([]byte, 0, 512), m); ok {
		return b, nil
	}
	return m.marshalReflect()
}

// marshalReflect is anacrolix's encoding of m, the reference appendMsg
// follows (FuzzMsgMarshal).
func (m *Msg) marshalReflect() ([]byte, error) {
	b, err := bencode.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode krpc: %w", err)
	}
	return b, nil
}

// appendMsg writes m as anacrolix's encoder does from the struct tags:
// keys sorted, omitempty fields left out when nil (or "" for strings),
// others written even when nil. It reports false for an empty raw value.
func appendMsg(b []byte, m *Msg) ([]byte, bool) {
	b = append(b, 'd')
	if m.E != nil {
		b = appendStr(b, "e")
		b = fmt.Appendf(b, "li%de", m.E.Code)
		b = appendStr(b, m.E.Msg)
		b = append(b, 'e')
	}
	if m.Q != "" {
		b = appendStr(appendStr(b, "q"), m.Q)
	}
	if m.R != nil {
		var ok bool
		if b, ok = appendReturn(appendStr(b, "r"), m.R); !ok {
			return nil, false
		}
	}
	b = appendBytes(appendStr(b, "t"), m.T)
	if m.V != nil {
		b = appendBytes(appendStr(b, "v"), m.V)
	}
	if m.X != nil {
		var ok bool
		if b, ok = appendArgs(appendStr(b, "x"), m.X); !ok {
			return nil, false
		}
	}
	b = appendStr(appendStr(b, "z"), m.Z)
	return append(b, 'e'), true
}

func appendReturn(b []byte, r *Return) ([]byte, bool) {
	b = append(b, 'd')
	if r.Data != nil {
		b = append(appendStr(b, "data"), 'l')
		for _, d := range r.Data {
			if len(d) == 0 {
				return nil, false
			}
			b = append(b, d...)
		}
		b = append(b, 'e')
	}
	b = optInt(b, "followers", r.Followers)
	b = appendBytes(appendStr(b, "id"), r.ID)
	b = optBytes(b, "ip", r.IP)
	b = optBytes(b, "n", r.N)
	b = optBytes(b, "nodes", r.Nodes)
	b = optList(b, "nodes2", r.Nodes2)
	b = optBytes(b, "token", r.Token)
	b = optList(b, "values", r.Values)
	return append(b, 'e'), true
}

func appendArgs(b []byte, x *Args) ([]byte, bool) {
	b = append(b, 'd')
	b = appendBytes(appendStr(b, "id"), x.ID)
	b = optInt(b, "implied_port", x.ImpliedPort)
	b = optBytes(b, "infoHash", x.InfoHash)
	b = optInt(b, "justtoken", x.JustToken)
	b = optBytes(b, "n", x.N)
	b = optInt(b, "noseed", x.NoSeed)
	b, ok := optRaw(b, "p", x.P)
	if !ok {
		return nil, false
	}
	b = optInt(b, "port", x.Port)
	b = optInt(b, "seed", x.Seed)
	b = optBytes(b, "sig_p", x.SigP)
	b = optBytes(b, "sig_user", x.SigUser)
	if b, ok = optRaw(b, "target", x.Target); !ok {
		return nil, false
	}
	b = optBytes(b, "token", x.Token)
	return append(b, 'e'), true
}

// optRaw appends key and v, an already-bencoded value, when v is set; an
// empty (set but not bencoded) v cannot be written.
func optRaw(b []byte, key string, v []byte) ([]byte, bool) {
	switch {
	case v == nil:
		return b, true
	case len(v) == 0:
		return nil, false
	}
	return append(appendStr(b, key), v...), true
}

func appendStr(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	return append(append(b, ':'), s...)
}

func appendBytes(b, s []byte) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	return append(append(b, ':'), s...)
}

func optBytes(b []byte, key string, v []byte) []byte {
	if v == nil {
		return b
	}
	return appendBytes(appendStr(b, key), v)
}

func optInt(b []byte, key string, v *int64) []byte {
	if v == nil {
		return b
	}
	b = append(appendStr(b, key), 'i')
	return append(strconv.AppendInt(b, *v, 10), 'e')
}

func optList(b []byte, key string, l [][]byte) []byte {
	if l == nil {
		return b
	}
	b = append(appendStr(b, key), 'l')
	for _, s := range l {
		b = appendBytes(b, s)
	}
	return append(b, 'e')
}

var errNotDict = errors.New("not a bencoded dict")

// DecodeMsg parses a datagram within twisterd's limits. Values of the wrong
// type are left absent (as libtorrent's dict_find_* lookups see them), so
// handlers can report twisterd's "missing 'k' key" errors.
func DecodeMsg(b []byte) (*Msg, error) {
	if _, err := checkBencode(b, maxPacketDepth, maxPacketItems); err != nil {
		return nil, fmt.Errorf("decode krpc: %w", err)
	}
	top, err := rawDict(b)
	if err != nil {
		return nil, fmt.Errorf("decode krpc: %w", err)
	}
	m := &Msg{}
	m.T, _ = bstr(top["t"])
	m.V, _ = bstr(top["v"])
	if z, ok := bstr(top["z"]); ok {
		m.Z = string(z)
	}
	if q, ok := bstr(top["q"]); ok {
		m.Q = string(q)
	}
	if raw, ok := top["x"]; ok {
		if x, err := rawDict(raw); err == nil {
			m.X = decodeArgs(x)
		}
	}
	if raw, ok := top["r"]; ok {
		if r, err := rawDict(raw); err == nil {
			m.R = decodeReturn(r)
		}
	}
	if raw, ok := top["e"]; ok {
		if l, err := rawList(raw); err == nil && len(l) >= 2 {
			code, _ := bint(l[0])
			msg, _ := bstr(l[1])
			m.E = &KRPCError{Code: code, Msg: string(msg)}
		}
	}
	return m, nil
}

func decodeArgs(x map[string]bencode.Bytes) *Args {
	a := &Args{}
	a.ID, _ = bstr(x["id"])
	a.ImpliedPort = bintPtr(x["implied_port"])
	a.InfoHash, _ = bstr(x["infoHash"])
	a.JustToken = bintPtr(x["justtoken"])
	a.N, _ = bstr(x["n"])
	a.NoSeed = bintPtr(x["noseed"])
	if p := x["p"]; len(p) > 0 && p[0] == 'd' {
		a.P = p
	}
	a.Port = bintPtr(x["port"])
	a.Seed = bintPtr(x["seed"])
	a.SigP, _ = bstr(x["sig_p"])
	a.SigUser, _ = bstr(x["sig_user"])
	if t := x["target"]; len(t) > 0 {
		a.Target = t
	}
	a.Token, _ = bstr(x["token"])
	return a
}

func decodeReturn(r map[string]bencode.Bytes) *Return {
	ret := &Return{}
	if raw, ok := r["data"]; ok {
		if l, err := rawList(raw); err == nil {
			ret.Data = l
		}
	}
	ret.Followers = bintPtr(r["followers"])
	ret.ID, _ = bstr(r["id"])
	ret.IP, _ = bstr(r["ip"])
	ret.N, _ = bstr(r["n"])
	ret.Nodes, _ = bstr(r["nodes"])
	if raw, ok := r["nodes2"]; ok {
		if l, err := rawList(raw); err == nil {
			ret.Nodes2 = stringElems(l)
		}
	}
	ret.Token, _ = bstr(r["token"])
	if raw, ok := r["values"]; ok {
		if l, err := rawList(raw); err == nil {
			ret.Values = stringElems(l)
		}
	}
	return ret
}

// stringElems keeps the string elements of a list (never nil).
func stringElems(l []bencode.Bytes) [][]byte {
	out := make([][]byte, 0, len(l))
	for _, e := range l {
		if s, ok := bstr(e); ok {
			out = append(out, s)
		}
	}
	return out
}

// rawDict decodes a dict keeping every value's exact bytes.
func rawDict(b []byte) (map[string]bencode.Bytes, error) {
	if len(b) == 0 || b[0] != 'd' {
		return nil, errNotDict
	}
	if m, ok := scanDict(b); ok {
		return m, nil
	}
	var m map[string]bencode.Bytes
	if err := bencode.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// scanDict is rawDict's fast path for canonical input (issue #15: the
// reflective decoder was half of a find_node reply's CPU). It gives up,
// leaving the case to anacrolix's decoder, on anything not plainly
// canonical: a leading zero or sign oddity in a number, a repeated key,
// trailing bytes, deep nesting. Values are copied, never aliasing the
// datagram buffer.
func scanDict(b []byte) (map[string]bencode.Bytes, bool) {
	m := make(map[string]bencode.Bytes, 8)
	i := 1
	for i < len(b) {
		if b[i] == 'e' {
			return m, i+1 == len(b)
		}
		ks, ke, ok := canonString(b, i)
		if !ok {
			return nil, false
		}
		if _, dup := m[string(b[ks:ke])]; dup {
			return nil, false
		}
		end, ok := canonValue(b, ke, 0)
		if !ok {
			return nil, false
		}
		m[string(b[ks:ke])] = bytes.Clone(b[ke:end])
		i = end
	}
	return nil, false
}

// canonValue returns the end of the canonical value at b[i].
func canonValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) || depth >= maxPacketDepth {
		return 0, false
	}
	switch c := b[i]; {
	case c >= '0' && c <= '9':
		_, end, ok := canonString(b, i)
		return end, ok
	case c == 'i':
		j := i + 1
		if j < len(b) && b[j] == '-' {
			j++
		}
		start := j
		for j < len(b) && j-start < 19 && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == start || j >= len(b) || b[j] != 'e' ||
			b[start] == '0' && (j-start > 1 || start > i+1) {
			return 0, false
		}
		if _, err := strconv.ParseInt(string(b[i+1:j]), 10, 64); err != nil {
			return 0, false
		}
		return j + 1, true
	case c == 'l' || c == 'd':
		j := i + 1
		for j < len(b) && b[j] != 'e' {
			if c == 'd' {
				_, ke, ok := canonString(b, j)
				if !ok {
					return 0, false
				}
				j = ke
			}
			end, ok := canonValue(b, j, depth+1)
			if !ok {
				return 0, false
			}
			j = end
		}
		if j >= len(b) {
			return 0, false
		}
		return j + 1, true
	}
	return 0, false
}

// canonString returns the bounds of the string at b[i] and the end of its
// encoding; the length has no leading zero and at most 8 digits.
func canonString(b []byte, i int) (start, end int, ok bool) {
	j, n := i, 0
	for j < len(b) && j-i < 8 && b[j] >= '0' && b[j] <= '9' {
		n = n*10 + int(b[j]-'0')
		j++
	}
	if j == i || j >= len(b) || b[j] != ':' || b[i] == '0' && j-i > 1 || n > len(b)-j-1 {
		return 0, 0, false
	}
	return j + 1, j + 1 + n, true
}

// rawList decodes a list keeping every element's exact bytes (never nil).
func rawList(b []byte) ([]bencode.Bytes, error) {
	if len(b) == 0 || b[0] != 'l' {
		return nil, errors.New("not a bencoded list")
	}
	var l []bencode.Bytes
	if err := bencode.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	if l == nil {
		l = []bencode.Bytes{}
	}
	return l, nil
}

// bstr reads a bencoded string; the result is non-nil when ok. Values
// come from a checked datagram, but bstr re-checks the framing anyway.
func bstr(raw []byte) ([]byte, bool) {
	i := bytes.IndexByte(raw, ':')
	if i < 1 || i > 8 {
		return nil, false
	}
	n, err := strconv.Atoi(string(raw[:i]))
	if err != nil || n < 0 || raw[0] == '-' || raw[0] == '+' || i+1+n != len(raw) {
		return nil, false
	}
	return raw[i+1 : i+1+n : i+1+n], true
}

// bint reads a bencoded integer.
func bint(raw []byte) (int64, bool) {
	if len(raw) < 3 || raw[0] != 'i' || raw[len(raw)-1] != 'e' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(raw[1:len(raw)-1]), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

func bintPtr(raw []byte) *int64 {
	n, ok := bint(raw)
	if !ok {
		return nil
	}
	return &n
}

func i64(n int64) *int64 { return &n }

// nodeInfo is a routing contact: id and UDP endpoint.
type nodeInfo struct {
	ID   krpc.ID
	Addr netip.AddrPort
}

// encodeNodes writes IPv4 contacts as compact 26-byte node infos (the nodes
// string, dht-swarm §2.5: id, IPv4, big-endian port), the layout of
// anacrolix's CompactIPv4NodeInfo written by hand: that one went through
// reflection and was most of a find_node reply's cost (issue #15). The
// result is never nil: twisterd sends `nodes: ""` when it knows none.
func encodeNodes(nodes []nodeInfo) []byte {
	b := make([]byte, 0, 26*len(nodes))
	for _, n := range nodes {
		ip := n.Addr.Addr()
		if !ip.Is4() {
			continue
		}
		a4 := ip.As4()
		b = append(b, n.ID[:]...)
		b = append(b, a4[:]...)
		b = binary.BigEndian.AppendUint16(b, n.Addr.Port())
	}
	return b
}

// decodeNodes reads a compact nodes string; trailing bytes short of a whole
// entry are ignored, as twisterd's reader does. Entries with port 0 are
// dropped.
func decodeNodes(b []byte) []nodeInfo {
	b = b[:len(b)-len(b)%26]
	out := make([]nodeInfo, 0, len(b)/26)
	for ; len(b) >= 26; b = b[26:] {
		port := binary.BigEndian.Uint16(b[24:26])
		if port == 0 {
			continue
		}
		out = append(out, nodeInfo{ID: krpc.ID(b[:20]), Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[20:24])), port)})
	}
	return out
}

// encodePeer writes a compact peer (6 or 18 bytes) with krpc.NodeAddr.
func encodePeer(ap netip.AddrPort) []byte {
	var na krpc.NodeAddr
	na.FromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	b, _ := na.MarshalBinary()
	return b
}

// decodePeers reads the values list of a tracker reply. A single element
// is treated as concatenated 6-byte IPv4 peers, as twisterd's find_data
// observer does (dht-swarm §2.4).
func decodePeers(values [][]byte) []netip.AddrPort {
	var out []netip.AddrPort
	add := func(b []byte) {
		var na krpc.NodeAddr
		if na.UnmarshalBinary(b) != nil {
			return
		}
		ap := na.ToNodeAddrPort().AddrPort
		if ap.IsValid() {
			out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
	}
	if len(values) == 1 {
		for b := values[0]; len(b) >= 6; b = b[6:] {
			add(b[:6])
		}
		return out
	}
	for _, v := range values {
		if len(v) == 6 || len(v) == 18 {
			add(v)
		}
	}
	return out
}
