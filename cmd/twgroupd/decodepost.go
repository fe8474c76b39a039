package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/twgroupd/twgroupd/internal/tjson"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// decodepost (issue 2 item 5): decode a post offline for operators and for
// interop debugging. Nothing here touches the network or a wallet file.

// maxHexInput bounds stdin; a post is at most twproto.MaxPostSize bytes, so
// anything much larger is not a post.
const maxHexInput = 64 << 10

type namedKey struct {
	name string
	key  *twproto.PrivateKey
}

// parsePubKeys reads --pubkey user=HEX values.
func parsePubKeys(specs []string) (map[string][]byte, error) {
	keys := map[string][]byte{}
	for _, s := range specs {
		user, hx, ok := strings.Cut(s, "=")
		if !ok || user == "" {
			return nil, fmt.Errorf("--pubkey %q: want user=HEX", s)
		}
		pub, err := hex.DecodeString(hx)
		if err != nil {
			return nil, fmt.Errorf("--pubkey %s: not hex", user)
		}
		if _, err := twproto.ParsePubKey(pub); err != nil {
			return nil, fmt.Errorf("--pubkey %s: %w", user, err)
		}
		keys[user] = pub
	}
	return keys, nil
}

// parseKeys reads --key name=WIF values. Errors never repeat the WIF.
func parseKeys(specs []string) ([]namedKey, error) {
	var keys []namedKey
	for _, s := range specs {
		name, wif, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return nil, errors.New("--key: want name=WIF")
		}
		k, err := twproto.ParseWIF(wif)
		if err != nil {
			return nil, fmt.Errorf("--key %s: invalid WIF: %w", name, err)
		}
		keys = append(keys, namedKey{name, k})
	}
	return keys, nil
}

// readPostHex takes the hex of the piece bytes from args[0] or stdin.
func readPostHex(args []string, stdin io.Reader) ([]byte, error) {
	var text string
	if len(args) > 0 {
		text = args[0]
	} else {
		b, err := io.ReadAll(io.LimitReader(stdin, maxHexInput+1))
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		if len(b) > maxHexInput {
			return nil, fmt.Errorf("input longer than %d bytes is not a post", maxHexInput)
		}
		text = string(b)
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, errors.New("no post given (hex as argument or on stdin)")
	}
	raw, err := hex.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("input is not hex: %w", err)
	}
	return raw, nil
}

// decodePost renders the JSON object decodepost prints: post (hexcaped as
// twisterd renders it), signature_valid (null when the author's key is not
// given), decrypted (null unless one of keys opens the post's dm).
func decodePost(raw []byte, pubkeys map[string][]byte, keys []namedKey) (tjson.Value, error) {
	post, err := twproto.DecodePost(raw)
	if err != nil {
		return tjson.Value{}, err
	}
	hexcaped, err := twproto.HexcapePost(raw)
	if err != nil {
		return tjson.Value{}, err
	}
	postJSON, err := tjson.Parse(hexcaped, tjson.TwisterClient)
	if err != nil {
		return tjson.Value{}, fmt.Errorf("render post: %w", err)
	}

	sigValid := tjson.Value{Kind: tjson.KindNull}
	if pub, ok := pubkeys[post.N]; ok {
		err := twproto.VerifySignature(post.UserpostRaw, post.Sig, pub)
		sigValid = tjson.Value{Kind: tjson.KindBool, Bool: err == nil}
	}

	decrypted := tjson.Value{Kind: tjson.KindNull}
	if post.DM != nil {
		for _, nk := range keys {
			plain, err := post.DM.Decrypt(nk.key)
			if err != nil {
				continue
			}
			decrypted = tjson.Value{Kind: tjson.KindObject, Obj: []tjson.Member{
				{Key: "key", Val: tjson.String(nk.name)},
				{Key: "plaintext_hex", Val: tjson.String(hex.EncodeToString(plain))},
				{Key: "payload", Val: payloadJSON(twproto.DecodePayload(plain))},
			}}
			break
		}
	}
	return tjson.Value{Kind: tjson.KindObject, Obj: []tjson.Member{
		{Key: "post", Val: postJSON},
		{Key: "signature_valid", Val: sigValid},
		{Key: "decrypted", Val: decrypted},
	}}, nil
}

// payloadJSON shows a DM payload in its wire shape (spec §5.1): {msg,to},
// {group_invite:{desc,key}}, {group_members:[..]}, or old-format plain text.
func payloadJSON(p twproto.Payload) tjson.Value {
	obj := func(m ...tjson.Member) tjson.Value { return tjson.Value{Kind: tjson.KindObject, Obj: m} }
	switch p.Kind {
	case twproto.PayloadGroupInvite:
		return obj(tjson.Member{Key: "group_invite", Val: obj(
			tjson.Member{Key: "desc", Val: tjson.String(p.InviteDesc)},
			tjson.Member{Key: "key", Val: tjson.String(p.InviteKey)},
		)})
	case twproto.PayloadGroupMembers:
		members := tjson.Value{Kind: tjson.KindArray, Arr: []tjson.Value{}}
		for _, m := range p.Members {
			members.Arr = append(members.Arr, tjson.String(m))
		}
		return obj(tjson.Member{Key: "group_members", Val: members})
	}
	if p.NewFormat {
		return obj(tjson.Member{Key: "msg", Val: tjson.String(p.Msg)}, tjson.Member{Key: "to", Val: tjson.String(p.To)})
	}
	return tjson.String(p.Msg)
}
