package twproto

import (
	"encoding/hex"
	"fmt"

	"github.com/twgroupd/twgroupd/internal/tjson"
)

// HexcapePost renders a post as twisterd's JSON: the bencode tree as JSON
// (sorted keys, raw strings) with signatures and DM envelope bytes in
// lowercase hex (spec §8.5).
func HexcapePost(raw []byte) ([]byte, error) {
	v, err := decodeEntry(raw)
	if err != nil {
		return nil, fmt.Errorf("hexcape: %w", err)
	}
	post, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("hexcape: post is not a dict")
	}
	HexcapePostEntry(post)
	return tjson.Marshal(post)
}

// HexcapePostEntry hexcapes a decoded post dict in place: sig_userpost,
// sig_wort, userpost.sig_rt, userpost.sig_fav, and the body/key/mac of
// userpost.dm or else userpost.pfav (hexcapePost in twister_utils.cpp).
func HexcapePostEntry(post map[string]any) {
	hexField(post, "sig_userpost")
	hexField(post, "sig_wort")
	up, ok := post["userpost"].(map[string]any)
	if !ok {
		return
	}
	hexField(up, "sig_rt")
	hexField(up, "sig_fav")
	env, ok := up["dm"].(map[string]any)
	if !ok {
		env, ok = up["pfav"].(map[string]any)
	}
	if ok {
		hexField(env, "body")
		hexField(env, "key")
		hexField(env, "mac")
	}
}

func hexField(m map[string]any, key string) {
	if s, ok := m[key].(string); ok {
		m[key] = hex.EncodeToString([]byte(s))
	}
}

// DecodeEntry decodes bencode into the JSON-ready shapes string, int64,
// []any and map[string]any (libtorrent's entry).
func DecodeEntry(raw []byte) (any, error) { return decodeEntry(raw) }
