package twproto

import (
	"bytes"
	"errors"
	"math/big"
	"strconv"

	"github.com/anacrolix/torrent/bencode"
)

// A bencode scanner for the receive path: it accepts exactly what
// decodeEntry (anacrolix's Unmarshal into any) accepts, and returns the raw
// spans of a dict's values, without building a value tree. Decoding a post
// with it allocates a few hundred bytes instead of tens of kilobytes
// (BenchmarkDecodePost). TestScanMatchesDecodeEntry and FuzzDecodePostScan
// check it against decodeEntry.

var errScan = errors.New("bencode: malformed")

// scanMaxDepth and scanMaxStrLen are anacrolix's DefaultMaxDepth and
// DefaultDecodeMaxStrLen.
const (
	scanMaxDepth  = 64
	scanMaxStrLen = 1<<27 - 1
)

// scanEntry validates a whole bencoded value, trailing bytes refused.
func scanEntry(b []byte) error {
	end, err := scanValue(b, 0, 0)
	if err != nil {
		return err
	}
	if end != len(b) {
		return errScan
	}
	return nil
}

// scanValue validates the value at b[off:] (depth containers around it)
// and returns where it ends.
func scanValue(b []byte, off, depth int) (int, error) {
	if off >= len(b) {
		return 0, errScan
	}
	switch c := b[off]; {
	case c == 'i':
		end := bytes.IndexByte(b[off+1:], 'e')
		if end < 0 || !validInt(b[off+1:off+1+end]) {
			return 0, errScan
		}
		return off + 1 + end + 1, nil
	case c >= '0' && c <= '9':
		_, end, ok := scanString(b, off)
		if !ok {
			return 0, errScan
		}
		return end, nil
	case c == 'l':
		if depth+1 > scanMaxDepth {
			return 0, errScan
		}
		off++
		for {
			if off >= len(b) {
				return 0, errScan
			}
			if b[off] == 'e' {
				return off + 1, nil
			}
			var err error
			if off, err = scanValue(b, off, depth+1); err != nil {
				return 0, err
			}
		}
	case c == 'd':
		end, err := scanDict(b, off, depth, nil)
		return end, err
	}
	return 0, errScan
}

// scanDict validates the dict at b[off:]: string keys in strictly
// increasing order, each with a value. fn, if set, gets each key and its
// value's span.
func scanDict(b []byte, off, depth int, fn func(key, val []byte)) (int, error) {
	if depth+1 > scanMaxDepth {
		return 0, errScan
	}
	off++
	var last []byte
	first := true
	for {
		if off >= len(b) {
			return 0, errScan
		}
		if b[off] == 'e' {
			return off + 1, nil
		}
		if b[off] < '0' || b[off] > '9' {
			return 0, errScan // a non-string key
		}
		key, end, ok := scanString(b, off)
		if !ok || (!first && bytes.Compare(key, last) <= 0) {
			return 0, errScan
		}
		last, first = key, false
		if end >= len(b) || b[end] == 'e' {
			return 0, errScan // a key without a value
		}
		vend, err := scanValue(b, end, depth+1)
		if err != nil {
			return 0, err
		}
		if fn != nil {
			fn(key, b[end:vend])
		}
		off = vend
	}
}

// scanString reads the string at b[off:] ("len:bytes").
func scanString(b []byte, off int) (s []byte, end int, ok bool) {
	colon := bytes.IndexByte(b[off:], ':')
	if colon < 0 {
		return nil, 0, false
	}
	digits := b[off : off+colon]
	if len(digits) > 1 && digits[0] == '0' {
		return nil, 0, false
	}
	n, err := strconv.ParseInt(string(digits), 10, 0)
	if err != nil || n > scanMaxStrLen {
		return nil, 0, false
	}
	start := off + colon + 1
	if int64(len(b)-start) < n {
		return nil, 0, false
	}
	return b[start : start+int(n)], start + int(n), true
}

// validInt is anacrolix's integer rule: optional '-', digits, no leading
// zero (but "0"); values beyond int64 are accepted (as big integers).
func validInt(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	if len(s) > 1 {
		d := s
		if d[0] == '-' {
			d = d[1:]
		}
		if d[0] < '1' || d[0] > '9' {
			return false
		}
	}
	if _, err := strconv.ParseInt(string(s), 10, 64); err != nil {
		var ne *strconv.NumError
		if !errors.As(err, &ne) || ne.Err != strconv.ErrRange {
			return false
		}
		if _, ok := new(big.Int).SetString(string(s), 10); !ok {
			return false
		}
	}
	return true
}

// spanDict returns the value spans of a dict already validated by
// scanEntry (they alias b).
func spanDict(b []byte) map[string]bencode.Bytes {
	n := 0
	_, _ = scanDict(b, 0, 0, func(_, _ []byte) { n++ })
	m := make(map[string]bencode.Bytes, n)
	_, _ = scanDict(b, 0, 0, func(k, v []byte) { m[string(k)] = bencode.Bytes(v) })
	return m
}

// spanString is bstring for a validated span.
func spanString(raw []byte) (string, bool) {
	if len(raw) == 0 || raw[0] < '0' || raw[0] > '9' {
		return "", false
	}
	s, _, ok := scanString(raw, 0)
	return string(s), ok
}

// spanInt is bint for a validated span.
func spanInt(raw []byte) (int64, bool) {
	if len(raw) < 2 || raw[0] != 'i' || raw[len(raw)-1] != 'e' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(raw[1:len(raw)-1]), 10, 64)
	return n, err == nil
}
