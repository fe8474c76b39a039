package twproto

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/anacrolix/torrent/bencode"
)

// MaxPostSize is the whole-post limit of acceptSignedPost (spec §3.3 rule 1).
const MaxPostSize = 2048

// MaxMsgChars is the limit on `msg` in code points (spec §3.3 rule 7).
const MaxMsgChars = 140

// Post flags twisterd derives per piece (spec §3.1).
const (
	FlagRT   = 1
	FlagDM   = 2
	FlagFav  = 4
	FlagPFav = 0x0C
	// FlagHome is getposts' default allowed_flags (spec §8.4).
	FlagHome = FlagRT
)

// ErrUnknownUser means the registry has no such user.
var ErrUnknownUser = errors.New("unknown user")

// PostError is an acceptSignedPost refusal; Error() is twisterd's message,
// which the RPC layer reports with code -32602.
type PostError struct{ Msg string }

func (e *PostError) Error() string { return e.Msg }

func postErrorf(format string, a ...any) error { return &PostError{Msg: fmt.Sprintf(format, a...)} }

// UserKey is a user's key of record and registration height.
type UserKey struct {
	PubKey    []byte // serialized as registered (33 or 65 bytes)
	RegHeight int64
}

// KeySource is what validation needs from the user registry (the blockchain
// in twisterd).
type KeySource interface {
	// UserKey returns user's key valid at block height (height < 0: best)
	// and the registration height; ErrUnknownUser if not registered.
	UserKey(ctx context.Context, user string, height int64) (UserKey, error)
	// BestHeight is the best block height, 0 when unknown.
	BestHeight(ctx context.Context) (int64, error)
}

// Post is a decoded signed post. Raw and UserpostRaw are the exact bytes
// received; nothing is re-encoded for verification.
type Post struct {
	Raw         []byte // the whole piece
	UserpostRaw []byte // the signed bytes
	Sig         []byte // sig_userpost
	N           string
	K           int64
	Height      int64
	Time        int64
	Msg, Msg2   string
	HasMsg      bool
	DM          *Envelope // nil unless userpost.dm is a dict
	Flags       int
	// Fields keeps every userpost value's raw bytes (rt, fav, reply, ...).
	Fields map[string]bencode.Bytes
}

// IsDM reports whether the post carries a direct message.
func (p *Post) IsDM() bool { return p.DM != nil }

// DecodePost checks size and structure (spec §3.3 rules 1, 2) and reads the
// userpost fields. Signature and registry checks are ValidatePost's.
func DecodePost(raw []byte) (*Post, error) {
	if len(raw) == 0 || len(raw) > MaxPostSize {
		return nil, postErrorf("bad bencoded post size")
	}
	// The whole tree is validated once (as decodeEntry would), so that a
	// malformed value anywhere (an empty integer "ie", say) refuses the post
	// instead of surfacing when it is rendered; then only spans are read.
	if raw[0] != 'd' || scanEntry(raw) != nil {
		return nil, postErrorf("missing post or signature.")
	}
	var upRaw, sigRaw []byte
	ok := false
	_, _ = scanDict(raw, 0, 0, func(k, v []byte) {
		switch string(k) {
		case "userpost":
			upRaw, ok = v, true
		case "sig_userpost":
			sigRaw = v
		}
	})
	sig, sigOK := spanString(sigRaw)
	if !ok || len(upRaw) == 0 || upRaw[0] != 'd' || !sigOK || sig == "" {
		return nil, postErrorf("missing post or signature.")
	}
	up := spanDict(upRaw)
	p := &Post{Raw: raw, UserpostRaw: upRaw, Sig: []byte(sig), Fields: up, K: -1}
	p.N, _ = spanString(up["n"])
	if k, ok := spanInt(up["k"]); ok {
		p.K = k
	}
	p.Height, _ = spanInt(up["height"])
	p.Time, _ = spanInt(up["time"])
	p.Msg, p.HasMsg = spanString(up["msg"])
	p.Msg2, _ = spanString(up["msg2"])
	if d, ok := up["dm"]; ok && len(d) > 0 && d[0] == 'd' {
		p.DM = envelopeFromSpan(d)
		p.Flags = FlagDM
	} else if pf, ok := up["pfav"]; ok && len(pf) > 0 && pf[0] == 'd' {
		p.Flags = FlagPFav
	} else {
		if _, ok := up["rt"]; ok {
			p.Flags |= FlagRT
		}
		if _, ok := up["fav"]; ok {
			p.Flags |= FlagFav
		}
	}
	return p, nil
}

// ValidatePost applies every acceptSignedPost rule (spec §3.3) for piece k
// of user's swarm, with the keys from ks.
func ValidatePost(ctx context.Context, raw []byte, user string, k int64, ks KeySource) (*Post, error) {
	p, err := DecodePost(raw)
	if err != nil {
		return nil, err
	}
	if p.N != user {
		return nil, postErrorf("expected username '%s' got '%s'", user, p.N)
	}
	if p.K != k {
		return nil, postErrorf("expected piece '%d' got '%d'", k, p.K)
	}
	best, err := ks.BestHeight(ctx)
	if err != nil {
		return nil, fmt.Errorf("validate post: best height: %w", err)
	}
	reg, err := ks.UserKey(ctx, user, -1)
	if errors.Is(err, ErrUnknownUser) {
		return nil, postErrorf("too much posts from user '%s' rejecting post", user)
	} else if err != nil {
		return nil, fmt.Errorf("validate post: registry: %w", err)
	}
	if k < 0 || (best > 0 && k > 2*(best-reg.RegHeight)+20) {
		return nil, postErrorf("too much posts from user '%s' rejecting post", user)
	}
	if p.Height < 0 || (best > 0 && p.Height > best+1) {
		return nil, postErrorf("post from future not accepted (height: %d > %d)", p.Height, best+1)
	}
	if p.HasMsg {
		if !utf8.ValidString(p.Msg) {
			return nil, postErrorf("invalid utf8 string")
		}
		if n := utf8.RuneCountInString(p.Msg); n > MaxMsgChars {
			return nil, postErrorf("msg too big (%d > %d)", n, MaxMsgChars)
		}
	}
	if err := verifyAt(ctx, ks, p.UserpostRaw, p.Sig, user, p.Height); err != nil {
		return nil, err
	}
	// Embedded originals of retwists and favorites carry their own signature.
	for _, pair := range [][2]string{{"rt", "sig_rt"}, {"fav", "sig_fav"}} {
		orig, ok := p.Fields[pair[0]]
		if !ok {
			continue
		}
		sig, _ := bstring(p.Fields[pair[1]])
		od, err := rawDict(orig)
		if err != nil {
			return nil, postErrorf("bad post signature")
		}
		on, _ := bstring(od["n"])
		oh, _ := bint(od["height"])
		if err := verifyAt(ctx, ks, orig, []byte(sig), on, oh); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func verifyAt(ctx context.Context, ks KeySource, msg, sig []byte, user string, height int64) error {
	uk, err := ks.UserKey(ctx, user, height)
	if errors.Is(err, ErrUnknownUser) {
		return postErrorf("bad post signature")
	} else if err != nil {
		return fmt.Errorf("validate post: registry: %w", err)
	}
	if VerifySignature(msg, sig, uk.PubKey) != nil {
		return postErrorf("bad post signature")
	}
	return nil
}

// BuildDMUserpost encodes a DM userpost exactly as createSignedUserpost
// does: keys dm, height, k, msg "", msg2 "", n, time (spec §3.2).
func BuildDMUserpost(user string, k, height, time int64, env *Envelope) []byte {
	dm, _ := env.MarshalBencode()
	b := make([]byte, 0, 96+len(dm)+len(user))
	b = append(b, 'd')
	b = appendString(b, []byte("dm"))
	b = append(b, dm...)
	b = appendString(b, []byte("height"))
	b = appendInt(b, height)
	b = appendString(b, []byte("k"))
	b = appendInt(b, k)
	b = appendString(b, []byte("msg"))
	b = appendString(b, nil)
	b = appendString(b, []byte("msg2"))
	b = appendString(b, nil)
	b = appendString(b, []byte("n"))
	b = appendString(b, []byte(user))
	b = appendString(b, []byte("time"))
	b = appendInt(b, time)
	return append(b, 'e')
}

// WrapSignedPost builds {"sig_userpost": sig, "userpost": userpost}.
func WrapSignedPost(sig, userpost []byte) []byte {
	b := make([]byte, 0, len(userpost)+96)
	b = append(b, 'd')
	b = appendString(b, []byte("sig_userpost"))
	b = appendString(b, sig)
	b = appendString(b, []byte("userpost"))
	b = append(b, userpost...)
	return append(b, 'e')
}

// BuildDMPost signs and wraps a DM userpost. The caller still runs
// ValidatePost before publishing, as twisterd's RPC does.
func BuildDMPost(key *PrivateKey, user string, k, height, time int64, env *Envelope) ([]byte, error) {
	up := BuildDMUserpost(user, k, height, time, env)
	sig, err := Sign(key, up)
	if err != nil {
		return nil, fmt.Errorf("build dm post: %w", err)
	}
	post := WrapSignedPost(sig, up)
	if len(post) > MaxPostSize {
		return nil, postErrorf("bad bencoded post size")
	}
	return post, nil
}
