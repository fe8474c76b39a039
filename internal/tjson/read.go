package tjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Mode is the dialect the reader imitates. Both keep string bytes raw
// (bytes >= 0x80 pass unchanged, valid UTF-8 or not, as json_spirit reads
// them, spec posts-dm-groups-rpc §8.2), keep object members in order with
// duplicates, and tell ints from reals as json_spirit does; both reject text
// after the value.
type Mode int

const (
	// TwisterClient reads as twisterd's client (json_spirit's reader on
	// std::string, spec §8.2 "Input"): \uXXXX keeps only the low byte of the
	// code point, \xHH is a byte, raw control bytes may stand in strings,
	// \f and \v are white space, numbers may have leading zeros, a number
	// beyond int64/uint64/float64 is an error, and a value may stand inside
	// at most clientMaxDepth containers.
	TwisterClient Mode = iota
	// RFC8259 reads as the server reads requests: the grammar of
	// encoding/json (RFC 8259; invalid UTF-8 inside strings is accepted, as
	// json_spirit does), \uXXXX (and surrogate pairs) decoded to UTF-8 as
	// encoding/json decodes them (a deliberate difference, docs/rpc.md), a
	// number of any size valid (beyond int64/uint64/float64 it is written
	// back as its text, Raw), and nesting bounded at encoding/json's 10000.
	RFC8259
)

const (
	clientMaxDepth = 512
	rfcMaxDepth    = 10000 // encoding/json's maxNestingDepth
)

// ErrSyntax is wrapped by every reader error.
var ErrSyntax = errors.New("invalid JSON")

// Value is one JSON value as json_spirit holds it.
type Value struct {
	Kind   Kind
	Bool   bool
	Int    int64
	Uint   uint64 // set with IsUint for ints above MaxInt64
	IsUint bool
	Real   float64
	Str    string // raw bytes
	Arr    []Value
	Obj    []Member
	// Raw is the value's text as read, without surrounding white space; it
	// aliases the input of Parse.
	Raw []byte
	// huge marks a number beyond int64/uint64/float64 (RFC8259 mode only):
	// Int is 0 or Real ±Inf, and AppendValue writes Raw.
	huge bool
}

// Member is one name/value pair of an object, in document order.
type Member struct {
	Key string
	Val Value
}

// String is a string value.
func String(s string) Value { return Value{Kind: KindString, Str: s} }

// Get returns the value of the first member named key of an object, or
// null, as json_spirit's find_value.
func (v Value) Get(key string) Value {
	for _, m := range v.Obj {
		if m.Key == key {
			return m.Val
		}
	}
	return Value{Kind: KindNull}
}

// Parse reads exactly one JSON value, with surrounding white space, and
// builds all of it.
func Parse(text []byte, m Mode) (Value, error) {
	return parse(text, m, -1)
}

// Valid reports whether text is one JSON value in mode m.
func Valid(text []byte, m Mode) bool {
	_, err := parse(text, m, 0)
	return err == nil
}

// RawMember is a member of an object read one level deep: its key decoded,
// its value as text.
type RawMember struct {
	Key   string
	Value json.RawMessage
}

// Members lists the members of the JSON object raw in order, duplicates
// kept (callers decide which one wins), each value a copy of its text.
func Members(raw []byte, m Mode) ([]RawMember, error) {
	v, err := parse(raw, m, 1)
	if err != nil {
		return nil, err
	}
	if v.Kind != KindObject {
		return nil, fmt.Errorf("%w: not an object", ErrSyntax)
	}
	out := make([]RawMember, len(v.Obj))
	for i, mem := range v.Obj {
		out[i] = RawMember{Key: mem.Key, Value: bytes.Clone(mem.Val.Raw)}
	}
	return out, nil
}

// Elements splits the JSON array raw into copies of its elements' text;
// null is no elements, as encoding/json unmarshals it.
func Elements(raw []byte, m Mode) ([]json.RawMessage, error) {
	v, err := parse(raw, m, 1)
	if err != nil {
		return nil, err
	}
	switch v.Kind {
	case KindNull:
		return nil, nil
	case KindArray:
	default:
		return nil, fmt.Errorf("%w: not an array", ErrSyntax)
	}
	out := make([]json.RawMessage, len(v.Arr))
	for i, e := range v.Arr {
		out[i] = bytes.Clone(e.Raw)
	}
	return out, nil
}

// Len counts the elements or members of the JSON array or object raw
// while validating it, building nothing (a batch over a limit is refused
// before any copy); ok is false when raw is not one valid array or object.
func Len(raw []byte, m Mode) (n int, ok bool) {
	p := parser{s: raw, client: m == TwisterClient, count: true}
	v, err := p.parse(0)
	if err != nil || v.Kind != KindArray && v.Kind != KindObject {
		return 0, false
	}
	return p.n, true
}

// KindOf classifies valid JSON text the way json_spirit does without
// reading it: a number with a fraction or an exponent is a real, any other
// number an int; empty text is null.
func KindOf(raw []byte) Kind {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return KindNull
	}
	switch raw[0] {
	case '{':
		return KindObject
	case '[':
		return KindArray
	case '"':
		return KindString
	case 't', 'f':
		return KindBool
	case 'n':
		return KindNull
	}
	if bytes.ContainsAny(raw, ".eE") {
		return KindReal
	}
	return KindInt
}

// parse reads one value; build is how many levels get their members,
// elements and scalars filled in (-1 all, 0 none: validation only). Every
// value gets Kind and Raw.
func parse(text []byte, m Mode, build int) (Value, error) {
	p := parser{s: text, client: m == TwisterClient}
	return p.parse(build)
}

func (p *parser) parse(build int) (Value, error) {
	p.skipSpace()
	v, err := p.tree(build)
	if err != nil {
		return Value{}, err
	}
	p.skipSpace()
	if p.pos != len(p.s) {
		return Value{}, p.fail("trailing text")
	}
	return v, nil
}

type parser struct {
	s      []byte
	pos    int
	client bool // TwisterClient, else RFC8259
	count  bool // count the top-level elements or members in n
	n      int
}

func (p *parser) skipSpace() {
	for p.pos < len(p.s) {
		switch p.s[p.pos] {
		case ' ', '\t', '\n', '\r':
		case '\f', '\v':
			if !p.client {
				return
			}
		default:
			return
		}
		p.pos++
	}
}

func (p *parser) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrSyntax, what, p.pos)
}

// frame is an open container whose members or elements are kept.
type frame struct {
	v     Value
	start int
	key   string // the name of the member being read
}

// tree reads one value without recursion: hostile nesting costs a frame
// per kept level and a byte per level below build, never Go stack.
func (p *parser) tree(build int) (Value, error) {
	var frames []frame
	var skipped []byte // closers of the containers only validated, inside the frames
	skipStart := 0     // where the outermost of those starts
	var v Value
	for {
		// A value starts at p.pos.
		depth := len(frames) + len(skipped)
		if p.client && depth > clientMaxDepth {
			return Value{}, p.fail("nesting too deep")
		}
		if p.pos >= len(p.s) {
			return Value{}, p.fail("unexpected end")
		}
		keep := len(skipped) == 0 && (build < 0 || depth < build)
		start := p.pos
		c := p.s[p.pos]
		if c == '{' || c == '[' {
			if !p.client && depth >= rfcMaxDepth {
				return Value{}, p.fail("nesting too deep")
			}
			p.pos++
			if keep {
				f := frame{v: Value{Kind: KindArray, Arr: []Value{}}, start: start}
				if c == '{' {
					f.v = Value{Kind: KindObject, Obj: []Member{}}
				}
				frames = append(frames, f)
			} else {
				if len(skipped) == 0 {
					skipStart = start
				}
				skipped = append(skipped, c+2) // '{'+2 is '}', '['+2 is ']'
			}
			p.skipSpace()
			if p.pos >= len(p.s) || p.s[p.pos] != c+2 {
				if c == '{' {
					if err := p.memberName(frames, skipped); err != nil {
						return Value{}, err
					}
				}
				continue
			}
			p.pos++ // empty
			v = p.pop(&frames, &skipped, skipStart)
		} else {
			var err error
			if v, err = p.scalar(keep); err != nil {
				return Value{}, err
			}
			v.Raw = p.s[start:p.pos:p.pos]
		}
		// v is complete: keep it, then read on to the next value or close.
		for {
			if len(frames) == 0 && len(skipped) == 0 {
				return v, nil
			}
			if p.count && len(frames)+len(skipped) == 1 {
				p.n++
			}
			if len(skipped) == 0 {
				f := &frames[len(frames)-1]
				if f.v.Kind == KindObject {
					f.v.Obj = append(f.v.Obj, Member{f.key, v})
				} else {
					f.v.Arr = append(f.v.Arr, v)
				}
			}
			closer, what := byte(']'), "array"
			if len(skipped) > 0 {
				closer = skipped[len(skipped)-1]
			} else if frames[len(frames)-1].v.Kind == KindObject {
				closer = '}'
			}
			if closer == '}' {
				what = "object"
			}
			p.skipSpace()
			if p.pos >= len(p.s) {
				return Value{}, p.fail("unterminated " + what)
			}
			if p.s[p.pos] == closer {
				p.pos++
				v = p.pop(&frames, &skipped, skipStart)
				continue
			}
			if p.s[p.pos] != ',' {
				return Value{}, p.fail("expected ',' or '" + string(closer) + "'")
			}
			p.pos++
			p.skipSpace()
			if closer == '}' {
				if err := p.memberName(frames, skipped); err != nil {
					return Value{}, err
				}
			}
			break
		}
	}
}

// pop closes the innermost container, just read to its closer.
func (p *parser) pop(frames *[]frame, skipped *[]byte, skipStart int) Value {
	if n := len(*skipped); n > 0 {
		kind := KindArray
		if (*skipped)[n-1] == '}' {
			kind = KindObject
		}
		*skipped = (*skipped)[:n-1]
		return Value{Kind: kind, Raw: p.s[skipStart:p.pos:p.pos]} // used only when n == 1
	}
	n := len(*frames)
	f := (*frames)[n-1]
	*frames = (*frames)[:n-1]
	f.v.Raw = p.s[f.start:p.pos:p.pos]
	return f.v
}

// memberName reads `"name" :` of the innermost open object, decoding the
// name when that object is kept.
func (p *parser) memberName(frames []frame, skipped []byte) error {
	if p.pos >= len(p.s) || p.s[p.pos] != '"' {
		return p.fail("expected member name")
	}
	key, err := p.str(len(skipped) == 0)
	if err != nil {
		return err
	}
	if len(skipped) == 0 {
		frames[len(frames)-1].key = key
	}
	p.skipSpace()
	if p.pos >= len(p.s) || p.s[p.pos] != ':' {
		return p.fail("expected ':'")
	}
	p.pos++
	p.skipSpace()
	return nil
}

// scalar reads a string, number or literal; keep false only validates it.
func (p *parser) scalar(keep bool) (Value, error) {
	switch c := p.s[p.pos]; {
	case c == '"':
		s, err := p.str(keep)
		return Value{Kind: KindString, Str: s}, err
	case c == '-' || c >= '0' && c <= '9':
		return p.number(keep)
	case p.literal("true"):
		return Value{Kind: KindBool, Bool: true}, nil
	case p.literal("false"):
		return Value{Kind: KindBool}, nil
	case p.literal("null"):
		return Value{Kind: KindNull}, nil
	}
	return Value{}, p.fail("unexpected character")
}

func (p *parser) literal(word string) bool {
	if len(p.s)-p.pos >= len(word) && string(p.s[p.pos:p.pos+len(word)]) == word {
		p.pos += len(word)
		return true
	}
	return false
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

// hexAt reads n hex digits at s[i:] without moving.
func (p *parser) hexAt(i, n int) (rune, bool) {
	if len(p.s)-i < n {
		return 0, false
	}
	var v rune
	for _, c := range p.s[i : i+n] {
		d, ok := hexVal(c)
		if !ok {
			return 0, false
		}
		v = v<<4 | rune(d)
	}
	return v, true
}

func (p *parser) hexDigits(n int) (rune, error) {
	v, ok := p.hexAt(p.pos, n)
	if !ok {
		return 0, p.fail("bad hex escape")
	}
	p.pos += n
	return v, nil
}

// str reads a string literal at the opening quote; decode false only
// validates it.
func (p *parser) str(decode bool) (string, error) {
	p.pos++ // opening quote
	start := p.pos
	var out []byte // the decoded bytes once an escape is seen
	escaped := false
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == '"':
			p.pos++
			switch {
			case !decode:
				return "", nil
			case !escaped:
				return string(p.s[start : p.pos-1]), nil
			}
			return string(out), nil
		case c == '\\':
			if decode && !escaped {
				out = append([]byte(nil), p.s[start:p.pos]...)
			}
			escaped = true
			var tmp [utf8.UTFMax]byte
			b, err := p.escape(tmp[:0])
			if err != nil {
				return "", err
			}
			if decode {
				out = append(out, b...)
			}
		case c < 0x20 && !p.client:
			return "", p.fail("control byte in string")
		default:
			if decode && escaped {
				out = append(out, c)
			}
			p.pos++
		}
	}
	return "", p.fail("unterminated string")
}

// escape reads the escape at the backslash and appends its bytes to b.
func (p *parser) escape(b []byte) ([]byte, error) {
	p.pos++
	if p.pos >= len(p.s) {
		return nil, p.fail("unterminated string")
	}
	e := p.s[p.pos]
	p.pos++
	switch e {
	case '"', '\\', '/':
		return append(b, e), nil
	case 'b':
		return append(b, '\b'), nil
	case 'f':
		return append(b, '\f'), nil
	case 'n':
		return append(b, '\n'), nil
	case 'r':
		return append(b, '\r'), nil
	case 't':
		return append(b, '\t'), nil
	case 'u':
		r, err := p.hexDigits(4)
		if err != nil {
			return nil, err
		}
		if p.client {
			return append(b, byte(r)), nil // json_spirit: low byte only
		}
		return utf8.AppendRune(b, p.surrogate(r)), nil
	case 'x':
		if p.client { // json_spirit's \xHH
			r, err := p.hexDigits(2)
			if err != nil {
				return nil, err
			}
			return append(b, byte(r)), nil
		}
	}
	return nil, p.fail("unknown escape")
}

// surrogate completes a UTF-16 high surrogate hi with a following \uXXXX
// low one, as encoding/json does: an unpaired surrogate is U+FFFD and the
// next escape is read on its own.
func (p *parser) surrogate(hi rune) rune {
	if !utf16.IsSurrogate(hi) {
		return hi
	}
	if len(p.s)-p.pos >= 6 && p.s[p.pos] == '\\' && p.s[p.pos+1] == 'u' {
		if lo, ok := p.hexAt(p.pos+2, 4); ok {
			if r := utf16.DecodeRune(hi, lo); r != utf8.RuneError {
				p.pos += 6
				return r
			}
		}
	}
	return utf8.RuneError
}

// number reads a number: with '.' or an exponent it is a real
// (json_spirit's strict_real_p), else an int64, else a uint64.
func (p *parser) number(convert bool) (Value, error) {
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
	first := p.pos
	if n := digits(); n == 0 || !p.client && n > 1 && p.s[first] == '0' {
		return Value{}, p.fail("bad number")
	}
	real := false
	if p.pos < len(p.s) && p.s[p.pos] == '.' {
		p.pos++
		real = true
		if digits() == 0 {
			return Value{}, p.fail("bad number")
		}
	}
	if p.pos < len(p.s) && (p.s[p.pos] == 'e' || p.s[p.pos] == 'E') {
		p.pos++
		real = true
		if p.pos < len(p.s) && (p.s[p.pos] == '+' || p.s[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return Value{}, p.fail("bad number")
		}
	}
	if !convert && !p.client {
		if real {
			return Value{Kind: KindReal}, nil
		}
		return Value{Kind: KindInt}, nil
	}
	text := string(p.s[start:p.pos])
	if real {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			if p.client {
				return Value{}, p.fail("number out of range")
			}
			return Value{Kind: KindReal, Real: f, huge: true}, nil
		}
		return Value{Kind: KindReal, Real: f}, nil
	}
	if i, err := strconv.ParseInt(text, 10, 64); err == nil {
		return Value{Kind: KindInt, Int: i}, nil
	}
	if u, err := strconv.ParseUint(text, 10, 64); err == nil {
		return Value{Kind: KindInt, Uint: u, IsUint: true}, nil
	}
	if p.client {
		return Value{}, p.fail("number out of range")
	}
	return Value{Kind: KindInt, huge: true}, nil
}
