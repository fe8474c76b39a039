package twproto

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/anacrolix/torrent/bencode"
)

// rawDict decodes a bencoded dict keeping each value's exact bytes, which is
// what signature checks need (spec §2.3: twisterd hashes received bytes).
func rawDict(b []byte) (map[string]bencode.Bytes, error) {
	if len(b) == 0 || b[0] != 'd' {
		return nil, errors.New("not a bencoded dict")
	}
	var m map[string]bencode.Bytes
	if err := bencode.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeEntry decodes any bencoded value into string, int64, []any and
// map[string]any, the shapes of a libtorrent entry.
func decodeEntry(b []byte) (any, error) {
	var v any
	if err := bencode.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// bstring reads a bencoded string value.
func bstring(raw bencode.Bytes) (string, bool) {
	if len(raw) == 0 || raw[0] < '0' || raw[0] > '9' {
		return "", false
	}
	var s string
	if bencode.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// bint reads a bencoded integer value.
func bint(raw bencode.Bytes) (int64, bool) {
	if len(raw) == 0 || raw[0] != 'i' {
		return 0, false
	}
	var n int64
	if bencode.Unmarshal(raw, &n) != nil {
		return 0, false
	}
	return n, true
}

// Bencode encodes v canonically (dict keys sorted), as libtorrent does.
func Bencode(v any) ([]byte, error) {
	b, err := bencode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("bencode: %w", err)
	}
	return b, nil
}

// appendString appends a bencoded string.
func appendString(dst []byte, s []byte) []byte {
	dst = fmt.Appendf(dst, "%d:", len(s))
	return append(dst, s...)
}

func appendInt(dst []byte, n int64) []byte {
	return fmt.Appendf(dst, "i%de", n)
}

// isCanonicalDict reports whether raw re-encodes to itself; used only by tests
// and diagnostics, never to reject a received post (twisterd does not check
// key order, spec §3.3).
func isCanonicalDict(raw []byte) bool {
	v, err := decodeEntry(raw)
	if err != nil {
		return false
	}
	b, err := bencode.Marshal(v)
	return err == nil && bytes.Equal(b, raw)
}
