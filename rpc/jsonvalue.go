package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/twgroupd/twgroupd/internal/tjson"
)

// typeOf classifies a valid JSON value the way json_spirit does: a number
// with a fraction or an exponent is a real, any other number an int.
func typeOf(raw json.RawMessage) tjson.Kind {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return tjson.KindNull
	}
	switch raw[0] {
	case '{':
		return tjson.KindObject
	case '[':
		return tjson.KindArray
	case '"':
		return tjson.KindString
	case 't', 'f':
		return tjson.KindBool
	case 'n':
		return tjson.KindNull
	}
	if bytes.ContainsAny(raw, ".eE") {
		return tjson.KindReal
	}
	return tjson.KindInt
}

// typeError is json_spirit's check_type failure; execute turns it into -1.
func typeError(got, want tjson.Kind) *Error {
	return &Error{Code: CodeMisc, Message: tjson.TypeErrorMessage(got, want)}
}

// decodeString decodes a JSON string literal keeping raw bytes: bytes >= 0x80
// pass unchanged even when they are not valid UTF-8, as json_spirit reads them
// (spec §8.2). \uXXXX escapes become UTF-8 (twisterd keeps only the low byte;
// see docs/rpc.md).
func decodeString(raw []byte) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", errors.New("not a JSON string")
	}
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s), nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(s) {
			return "", errors.New("truncated escape")
		}
		switch s[i] {
		case '"', '\\', '/':
			out = append(out, s[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, n, err := decodeUnicodeEscape(s[i+1:])
			if err != nil {
				return "", err
			}
			out = utf8.AppendRune(out, r)
			i += n
		default:
			return "", fmt.Errorf("bad escape \\%c", s[i])
		}
	}
	return string(out), nil
}

// decodeUnicodeEscape reads XXXX (and a following \uXXXX low surrogate) and
// returns the rune and the number of bytes consumed after the 'u'.
func decodeUnicodeEscape(s []byte) (rune, int, error) {
	hi, ok := hex4(s)
	if !ok {
		return 0, 0, errors.New("bad \\u escape")
	}
	if utf16.IsSurrogate(hi) && len(s) >= 10 && s[4] == '\\' && s[5] == 'u' {
		if lo, ok := hex4(s[6:]); ok {
			if r := utf16.DecodeRune(hi, lo); r != utf8.RuneError {
				return r, 10, nil
			}
		}
	}
	if utf16.IsSurrogate(hi) {
		return utf8.RuneError, 4, nil
	}
	return hi, 4, nil
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s[:4]), 16, 16)
	if err != nil {
		return 0, false
	}
	return rune(v), true
}

// member is one name/value pair of a JSON object, in document order.
type member struct {
	Key   string
	Value json.RawMessage
}

// objectMembers lists the members of a JSON object in order (json_spirit
// keeps duplicates; callers decide which one wins).
func objectMembers(raw json.RawMessage) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("bad object key")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, member{Key: key, Value: v})
	}
	return out, nil
}

// arrayElements splits a JSON array into its raw elements.
func arrayElements(raw json.RawMessage) ([]json.RawMessage, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, err
	}
	return elems, nil
}

// jsonValid reports whether b is one well-formed JSON value. Invalid UTF-8
// inside strings is accepted, as json_spirit does.
func jsonValid(b []byte) bool { return json.Valid(b) }
