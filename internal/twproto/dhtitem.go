package twproto

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/anacrolix/torrent/bencode"
	"github.com/twgroupd/twgroupd/internal/tjson"
)

// Size limits of a DHT item's p (dht-swarm §2.3 putData).
const (
	MaxDHTSingleP  = 8192
	MaxDHTMultiP   = 768
	MaxDHTResource = 32
	// MaxTimeInFuture bounds p.time and post times (twister.h).
	MaxTimeInFuture = 7200
)

// ErrDHTSignature means sig_p does not verify for sig_user's key.
var ErrDHTSignature = errors.New("invalid signature")

// DHTTarget names a DHT resource: {n, r, t} (dht-swarm §3.1).
type DHTTarget struct {
	N, R, T string
}

// Multi reports whether the target is a multi resource ("m"); anything
// else counts as single, as in twisterd's putData.
func (t DHTTarget) Multi() bool { return t.T == "m" }

// Bencode is the canonical encoding d1:n..1:r..1:t..e.
func (t DHTTarget) Bencode() []byte {
	b := make([]byte, 0, 24+len(t.N)+len(t.R))
	b = append(b, 'd')
	b = appendString(b, []byte("n"))
	b = appendString(b, []byte(t.N))
	b = appendString(b, []byte("r"))
	b = appendString(b, []byte(t.R))
	b = appendString(b, []byte("t"))
	b = appendString(b, []byte(t.T))
	return append(b, 'e')
}

// Hash is TargetHash(n, r, t).
func (t DHTTarget) Hash() [20]byte { return TargetHash(t.N, t.R, t.T) }

// DHTP is the decoded p dict of a signed DHT item. Raw, TargetRaw and V
// are exact received bytes: the signature covers Raw and the target hash
// is SHA1(TargetRaw) (dht-swarm §2.3).
type DHTP struct {
	Raw        []byte
	Target     DHTTarget
	TargetRaw  []byte
	TargetKeys int // entries in the target dict; twisterd wants exactly 3
	V          []byte
	Seq        int64
	HasSeq     bool
	Height     int64
	Time       int64
}

// ParseDHTP decodes p with the key checks of twisterd's putData
// (verify_message): v of any type, optional int seq, int time and height,
// and a target dict with string n, r and t. Errors carry twisterd's
// messages ("missing 'time' key").
func ParseDHTP(raw []byte) (*DHTP, error) {
	m, err := rawDict(raw)
	if err != nil {
		return nil, fmt.Errorf("missing 'p' key")
	}
	p := &DHTP{Raw: raw}
	v, ok := m["v"]
	if !ok {
		return nil, errors.New("missing 'v' key")
	}
	p.V = v
	if s, ok := m["seq"]; ok {
		p.Seq, p.HasSeq = bint(s)
	}
	if p.Time, ok = bint(m["time"]); !ok {
		return nil, errors.New("missing 'time' key")
	}
	if p.Height, ok = bint(m["height"]); !ok {
		return nil, errors.New("missing 'height' key")
	}
	traw := m["target"]
	tm, err := rawDict(traw)
	if err != nil {
		return nil, errors.New("missing 'target' key")
	}
	p.TargetRaw = traw
	p.TargetKeys = len(tm)
	for _, k := range []struct {
		key string
		dst *string
	}{{"n", &p.Target.N}, {"r", &p.Target.R}, {"t", &p.Target.T}} {
		s, ok := bstring(tm[k.key])
		if !ok {
			return nil, fmt.Errorf("missing '%s' key", k.key)
		}
		*k.dst = s
	}
	return p, nil
}

// BuildDHTP encodes p as twisterd's dhtPutData does: keys height, [seq],
// target, time, v; seq only for singles with seq >= 0. v must be one
// bencoded value.
func BuildDHTP(target DHTTarget, v []byte, seq, height, time int64) []byte {
	b := make([]byte, 0, 96+len(v)+len(target.N)+len(target.R))
	b = append(b, 'd')
	b = appendString(b, []byte("height"))
	b = appendInt(b, height)
	if seq >= 0 && !target.Multi() {
		b = appendString(b, []byte("seq"))
		b = appendInt(b, seq)
	}
	b = appendString(b, []byte("target"))
	b = append(b, target.Bencode()...)
	b = appendString(b, []byte("time"))
	b = appendInt(b, time)
	b = appendString(b, []byte("v"))
	b = append(b, v...)
	return append(b, 'e')
}

// DHTItem is a signed DHT item {p, sig_p, sig_user} (dht-swarm §3.2).
type DHTItem struct {
	Raw     []byte // canonical item dict, p verbatim
	P       *DHTP
	SigP    []byte
	SigUser string
}

// EncodeDHTItem builds the item dict around the exact bytes of p.
func EncodeDHTItem(p, sigP []byte, sigUser string) []byte {
	b := make([]byte, 0, 32+len(p)+len(sigP)+len(sigUser))
	b = append(b, 'd')
	b = appendString(b, []byte("p"))
	b = append(b, p...)
	b = appendString(b, []byte("sig_p"))
	b = appendString(b, sigP)
	b = appendString(b, []byte("sig_user"))
	b = appendString(b, []byte(sigUser))
	return append(b, 'e')
}

// DecodeDHTItem decodes an item dict the way twisterd's getData client
// accepts it: p a dict, sig_p and sig_user strings (dht-swarm §3.5).
// Raw is re-built canonically around the received p bytes.
func DecodeDHTItem(raw []byte) (*DHTItem, error) {
	m, err := rawDict(raw)
	if err != nil {
		return nil, fmt.Errorf("dht item: %w", err)
	}
	praw := m["p"]
	if len(praw) == 0 || praw[0] != 'd' {
		return nil, errors.New("dht item: missing 'p' dict")
	}
	sigP, ok := bstring(m["sig_p"])
	if !ok {
		return nil, errors.New("dht item: missing 'sig_p'")
	}
	sigUser, ok := bstring(m["sig_user"])
	if !ok {
		return nil, errors.New("dht item: missing 'sig_user'")
	}
	p, err := ParseDHTP(praw)
	if err != nil {
		return nil, fmt.Errorf("dht item: %w", err)
	}
	it := &DHTItem{P: p, SigP: []byte(sigP), SigUser: sigUser}
	it.Raw = EncodeDHTItem(praw, it.SigP, sigUser)
	return it, nil
}

// VerifyDHTSignature checks sig over the exact bytes of p against the key
// of record of user at the best height, as twisterd's verifySignature with
// maxHeight -1. ErrDHTSignature when the user is unknown or the key differs.
func VerifyDHTSignature(ctx context.Context, keys KeySource, p, sig []byte, user string) error {
	uk, err := keys.UserKey(ctx, user, -1)
	if errors.Is(err, ErrUnknownUser) {
		return ErrDHTSignature
	} else if err != nil {
		return fmt.Errorf("verify dht item: registry: %w", err)
	}
	if VerifySignature(p, sig, uk.PubKey) != nil {
		return ErrDHTSignature
	}
	return nil
}

// Verify checks the item's signature (see VerifyDHTSignature).
func (it *DHTItem) Verify(ctx context.Context, keys KeySource) error {
	return VerifyDHTSignature(ctx, keys, it.P.Raw, it.SigP, it.SigUser)
}

// HexcapeDHTItem renders an item as dhtget prints it (hexcapeDht +
// entryToJson, spec posts-dm-groups-rpc §8.5, dht-swarm §3.6): sorted keys,
// raw strings, sig_p in hex and, when p.v is a dict, the post fields of
// HexcapePostEntry in hex. Items without signatures (the tracker item
// fabricated from followers) render without sig_p/sig_user.
func HexcapeDHTItem(raw []byte) ([]byte, error) {
	v, err := decodeEntryLoose(raw)
	if err != nil {
		return nil, fmt.Errorf("hexcape dht item: %w", err)
	}
	item, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("hexcape dht item: not a dict")
	}
	hexField(item, "sig_p")
	if p, ok := item["p"].(map[string]any); ok {
		if post, ok := p["v"].(map[string]any); ok {
			HexcapePostEntry(post)
		}
	}
	return tjson.Marshal(item)
}

// decodeEntryLoose decodes like DecodeEntry but accepts unsorted dict keys:
// items from twisterd are canonical, but a rendering must not fail on a
// peer's odd yet signed bytes.
func decodeEntryLoose(raw []byte) (any, error) {
	switch {
	case len(raw) == 0:
		return nil, errors.New("empty value")
	case raw[0] == 'd':
		m, err := rawDict(raw)
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, len(m))
		for k, r := range m {
			if out[k], err = decodeEntryLoose(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	case raw[0] == 'l':
		var l []bencode.Bytes
		if err := bencode.Unmarshal(raw, &l); err != nil {
			return nil, err
		}
		out := make([]any, len(l))
		for i, r := range l {
			var err error
			if out[i], err = decodeEntryLoose(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return decodeEntry(raw)
}

// DHTValueFromJSON converts dhtput's JSON value to bencode as twisterd does:
// jsonToEntry (integers stay integers, objects become dicts with the last
// duplicate key winning, booleans, reals and null become the string
// "<uninitialized>"), then unHexcapePost (sig_userpost, userpost.sig_rt and
// userpost.dm.{body,key,mac} are parsed back from hex). The result is
// canonical bencode.
func DHTValueFromJSON(value json.RawMessage) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	v, err := jsonToEntry(dec)
	if err != nil {
		return nil, fmt.Errorf("dht value: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("dht value: trailing data after JSON value")
	}
	if post, ok := v.(map[string]any); ok {
		unhexcapePost(post)
	}
	b, err := bencode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("dht value: %w", err)
	}
	return b, nil
}

const uninitialized = "<uninitialized>"

func jsonToEntry(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				if m[k], err = jsonToEntry(dec); err != nil {
					return nil, err
				}
			}
			_, err := dec.Token()
			return m, err
		case '[':
			l := []any{}
			for dec.More() {
				e, err := jsonToEntry(dec)
				if err != nil {
					return nil, err
				}
				l = append(l, e)
			}
			_, err := dec.Token()
			return l, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case string:
		return t, nil
	case json.Number:
		// json_spirit's int_type: an integer literal that fits 64 bits.
		if !strings.ContainsAny(t.String(), ".eE") {
			if n, err := t.Int64(); err == nil {
				return n, nil
			}
		}
		return uninitialized, nil
	default: // bool, null
		return uninitialized, nil
	}
}

func unhexcapePost(post map[string]any) {
	unhexField(post, "sig_userpost")
	up, ok := post["userpost"].(map[string]any)
	if !ok {
		return
	}
	unhexField(up, "sig_rt")
	if dm, ok := up["dm"].(map[string]any); ok {
		unhexField(dm, "body")
		unhexField(dm, "key")
		unhexField(dm, "mac")
	}
}

func unhexField(m map[string]any, key string) {
	if s, ok := m[key].(string); ok {
		m[key] = string(parseHexLoose(s))
	}
}

// parseHexLoose is bitcoin's ParseHex: whitespace between pairs is
// skipped, and it stops at the first byte that is not a hex pair (or NUL).
func parseHexLoose(s string) []byte {
	var out []byte
	i := 0
	for {
		for i < len(s) && isCSpace(s[i]) {
			i++
		}
		if i+1 >= len(s) {
			return out
		}
		b, err := hex.DecodeString(s[i : i+2])
		if err != nil {
			return out
		}
		out = append(out, b[0])
		i += 2
	}
}

func isCSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}
