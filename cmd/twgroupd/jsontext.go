package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/twgroupd/twgroupd/internal/tjson"
)

// JSON values as twisterd's json_spirit reads and writes them. The CLI needs
// its own small codec because it must (a) keep object member order, (b) keep
// string bytes raw (encoding/json turns invalid UTF-8 into U+FFFD), (c) tell
// ints from reals for the type errors of RPCConvertValues, and (d) print
// json_spirit's pretty format (spec posts-dm-groups-rpc §8.2).

type jvalue struct {
	kind   tjson.Kind
	b      bool
	i      int64
	u      uint64 // set with isUint for ints above MaxInt64
	isUint bool
	f      float64
	s      string // raw bytes
	arr    []jvalue
	obj    []jmember
}

type jmember struct {
	key string
	val jvalue
}

func jstr(s string) jvalue { return jvalue{kind: tjson.KindString, s: s} }

// get returns the first member named key of an object, or null, as
// json_spirit's find_value.
func (v jvalue) get(key string) jvalue {
	for _, m := range v.obj {
		if m.key == key {
			return m.val
		}
	}
	return jvalue{kind: tjson.KindNull}
}

// typeError is json_spirit's check_type message (Bitcoin's wording).
func typeError(got, want tjson.Kind) error {
	return errors.New(tjson.TypeErrorMessage(got, want))
}

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 512

var errJSONSyntax = errors.New("invalid JSON")

// parseJSON reads exactly one JSON value (surrounding whitespace allowed).
// Strings decode like json_spirit: \uXXXX keeps only the low byte of the code
// point (spec §8.2 "Input"), \xHH is a byte, raw bytes pass unchanged.
// Unlike json_spirit, trailing text after the value is an error rather than
// silently ignored, so "5x" is not taken as 5.
func parseJSON(s string) (jvalue, error) {
	p := parser{s: s}
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return jvalue{}, err
	}
	p.skipSpace()
	if p.pos != len(p.s) {
		return jvalue{}, fmt.Errorf("%w: trailing text at offset %d", errJSONSyntax, p.pos)
	}
	return v, nil
}

type parser struct {
	s   string
	pos int
}

func (p *parser) skipSpace() {
	for p.pos < len(p.s) {
		switch p.s[p.pos] {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", errJSONSyntax, what, p.pos)
}

func (p *parser) value(depth int) (jvalue, error) {
	if depth > maxDepth {
		return jvalue{}, p.fail("nesting too deep")
	}
	if p.pos >= len(p.s) {
		return jvalue{}, p.fail("unexpected end")
	}
	switch c := p.s[p.pos]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		s, err := p.str()
		return jstr(s), err
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case p.literal("true"):
		return jvalue{kind: tjson.KindBool, b: true}, nil
	case p.literal("false"):
		return jvalue{kind: tjson.KindBool}, nil
	case p.literal("null"):
		return jvalue{kind: tjson.KindNull}, nil
	}
	return jvalue{}, p.fail("unexpected character")
}

func (p *parser) literal(word string) bool {
	if len(p.s)-p.pos >= len(word) && p.s[p.pos:p.pos+len(word)] == word {
		p.pos += len(word)
		return true
	}
	return false
}

func (p *parser) object(depth int) (jvalue, error) {
	v := jvalue{kind: tjson.KindObject, obj: []jmember{}}
	p.pos++ // '{'
	p.skipSpace()
	if p.pos < len(p.s) && p.s[p.pos] == '}' {
		p.pos++
		return v, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.s) || p.s[p.pos] != '"' {
			return jvalue{}, p.fail("expected member name")
		}
		key, err := p.str()
		if err != nil {
			return jvalue{}, err
		}
		p.skipSpace()
		if p.pos >= len(p.s) || p.s[p.pos] != ':' {
			return jvalue{}, p.fail("expected ':'")
		}
		p.pos++
		p.skipSpace()
		val, err := p.value(depth + 1)
		if err != nil {
			return jvalue{}, err
		}
		v.obj = append(v.obj, jmember{key, val})
		p.skipSpace()
		if p.pos >= len(p.s) {
			return jvalue{}, p.fail("unterminated object")
		}
		switch p.s[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return v, nil
		default:
			return jvalue{}, p.fail("expected ',' or '}'")
		}
	}
}

func (p *parser) array(depth int) (jvalue, error) {
	v := jvalue{kind: tjson.KindArray, arr: []jvalue{}}
	p.pos++ // '['
	p.skipSpace()
	if p.pos < len(p.s) && p.s[p.pos] == ']' {
		p.pos++
		return v, nil
	}
	for {
		p.skipSpace()
		e, err := p.value(depth + 1)
		if err != nil {
			return jvalue{}, err
		}
		v.arr = append(v.arr, e)
		p.skipSpace()
		if p.pos >= len(p.s) {
			return jvalue{}, p.fail("unterminated array")
		}
		switch p.s[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return v, nil
		default:
			return jvalue{}, p.fail("expected ',' or ']'")
		}
	}
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func (p *parser) hexDigits(n int) (uint32, error) {
	if len(p.s)-p.pos < n {
		return 0, p.fail("short escape")
	}
	var v uint32
	for i := 0; i < n; i++ {
		d, ok := hexVal(p.s[p.pos+i])
		if !ok {
			return 0, p.fail("bad hex digit in escape")
		}
		v = v<<4 | uint32(d)
	}
	p.pos += n
	return v, nil
}

func (p *parser) str() (string, error) {
	p.pos++ // opening quote
	var out []byte
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch c {
		case '"':
			p.pos++
			return string(out), nil
		case '\\':
			p.pos++
			if p.pos >= len(p.s) {
				return "", p.fail("unterminated string")
			}
			e := p.s[p.pos]
			p.pos++
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
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
				v, err := p.hexDigits(4)
				if err != nil {
					return "", err
				}
				out = append(out, byte(v)) // json_spirit: low byte only
			case 'x':
				v, err := p.hexDigits(2)
				if err != nil {
					return "", err
				}
				out = append(out, byte(v))
			default:
				return "", p.fail("unknown escape")
			}
		default:
			out = append(out, c)
			p.pos++
		}
	}
	return "", p.fail("unterminated string")
}

// number reads a JSON number: with '.' or an exponent it is a real
// (json_spirit's strict_real_p), else an int64, else a uint64.
func (p *parser) number() (jvalue, error) {
	start := p.pos
	if p.s[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if digits() == 0 {
		return jvalue{}, p.fail("bad number")
	}
	real := false
	if p.pos < len(p.s) && p.s[p.pos] == '.' {
		p.pos++
		real = true
		if digits() == 0 {
			return jvalue{}, p.fail("bad number")
		}
	}
	if p.pos < len(p.s) && (p.s[p.pos] == 'e' || p.s[p.pos] == 'E') {
		p.pos++
		real = true
		if p.pos < len(p.s) && (p.s[p.pos] == '+' || p.s[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return jvalue{}, p.fail("bad number")
		}
	}
	text := p.s[start:p.pos]
	if real {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return jvalue{}, p.fail("number out of range")
		}
		return jvalue{kind: tjson.KindReal, f: f}, nil
	}
	if i, err := strconv.ParseInt(text, 10, 64); err == nil {
		return jvalue{kind: tjson.KindInt, i: i}, nil
	}
	if u, err := strconv.ParseUint(text, 10, 64); err == nil {
		return jvalue{kind: tjson.KindInt, u: u, isUint: true}, nil
	}
	return jvalue{}, p.fail("number out of range")
}

// writeJSON appends v as json_spirit's write_string(v, pretty) does:
// compact, or pretty with 4-space indents, `"key" : value` members, one
// element per line (an empty array prints as "[" newline "]"), and reals
// fixed with 8 decimals (Bitcoin's change to json_spirit).
func writeJSON(dst []byte, v jvalue, pretty bool) []byte {
	return writeValue(dst, v, pretty, 0)
}

func writeValue(dst []byte, v jvalue, pretty bool, level int) []byte {
	switch v.kind {
	case tjson.KindObject:
		return writeContainer(dst, '{', '}', len(v.obj), pretty, level, func(dst []byte, i int) []byte {
			dst = tjson.AppendString(dst, v.obj[i].key)
			if pretty {
				dst = append(dst, " : "...)
			} else {
				dst = append(dst, ':')
			}
			return writeValue(dst, v.obj[i].val, pretty, level+1)
		})
	case tjson.KindArray:
		return writeContainer(dst, '[', ']', len(v.arr), pretty, level, func(dst []byte, i int) []byte {
			return writeValue(dst, v.arr[i], pretty, level+1)
		})
	case tjson.KindString:
		return tjson.AppendString(dst, v.s)
	case tjson.KindBool:
		return strconv.AppendBool(dst, v.b)
	case tjson.KindInt:
		if v.isUint {
			return strconv.AppendUint(dst, v.u, 10)
		}
		return strconv.AppendInt(dst, v.i, 10)
	case tjson.KindReal:
		return strconv.AppendFloat(dst, v.f, 'f', 8, 64)
	}
	return append(dst, "null"...)
}

func writeContainer(dst []byte, open, closing byte, n int, pretty bool, level int, elem func([]byte, int) []byte) []byte {
	dst = append(dst, open)
	if pretty {
		dst = append(dst, '\n')
	}
	for i := 0; i < n; i++ {
		if pretty {
			dst = indent(dst, level+1)
		}
		dst = elem(dst, i)
		if i < n-1 {
			dst = append(dst, ',')
		}
		if pretty {
			dst = append(dst, '\n')
		}
	}
	if pretty {
		dst = indent(dst, level)
	}
	return append(dst, closing)
}

func indent(dst []byte, level int) []byte {
	for i := 0; i < level; i++ {
		dst = append(dst, "    "...)
	}
	return dst
}
