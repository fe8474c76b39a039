package tjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func parseClient(s string) (Value, error) { return Parse([]byte(s), TwisterClient) }

func TestParseKinds(t *testing.T) {
	cases := []struct {
		in   string
		kind Kind
	}{
		{"{}", KindObject}, {" [ ] ", KindArray}, {`"x"`, KindString}, {"true", KindBool}, {"false", KindBool},
		{"0", KindInt}, {"-12", KindInt}, {"18446744073709551615", KindInt}, {"1.0", KindReal}, {"1e3", KindReal},
		{"-0.5E-2", KindReal}, {"null", KindNull},
	}
	for _, tc := range cases {
		for _, m := range []Mode{TwisterClient, RFC8259} {
			v, err := Parse([]byte(tc.in), m)
			if err != nil || v.Kind != tc.kind {
				t.Errorf("%q mode %d: kind %v err %v, want %v", tc.in, m, v.Kind, err, tc.kind)
			}
			if k := KindOf([]byte(tc.in)); k != tc.kind {
				t.Errorf("KindOf(%q) = %v, want %v", tc.in, k, tc.kind)
			}
		}
	}
	for _, bad := range []string{"", "5x", "truex", "[1,]", "{\"a\"}", "{\"a\":1,}", "\"abc", "\"\\q\"", "\"\\u12\"",
		"01x", "-", "1.", ".5", "1e", "18446744073709551616", "nul", "[1 2]", "{1:2}", strings.Repeat("[", 600) + strings.Repeat("]", 600)} {
		if _, err := parseClient(bad); err == nil {
			t.Errorf("%q parsed", bad)
		} else if !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: %v is not ErrSyntax", bad, err)
		}
	}
}

// TestModesDiffer pins what only one mode accepts, and how each reads it.
func TestModesDiffer(t *testing.T) {
	cases := []struct {
		in             string
		client, server string // compact AppendValue, or "error"
	}{
		{`"\u0041\u00e9\u4e2d"`, "\"A\xe9-\"", `"Aé中"`},
		{`"\ud83d\ude00"`, `"=\u0000"`, `"😀"`},
		{`"\ud800x"`, `"\u0000x"`, "\"\uFFFDx\""},
		{`"\ud800\u0041"`, `"\u0000A"`, "\"\uFFFDA\""},
		{`"\x41\xff"`, "\"A\xff\"", "error"},
		{"\"a\x01b\"", `"a\u0001b"`, "error"},
		{"\f1\v", "1", "error"},
		{"01", "1", "error"},
		{"-007.5", "-7.50000000", "error"},
		{"1e999", "error", "1e999"},
		{"-18446744073709551616", "error", "-18446744073709551616"},
		{strings.Repeat("[", 513) + strings.Repeat("]", 513), strings.Repeat("[", 513) + strings.Repeat("]", 513), strings.Repeat("[", 513) + strings.Repeat("]", 513)},
		{strings.Repeat("[", 513) + "1" + strings.Repeat("]", 513), "error", strings.Repeat("[", 513) + "1" + strings.Repeat("]", 513)},
		{strings.Repeat("[", 10001) + strings.Repeat("]", 10001), "error", "error"},
	}
	for _, tc := range cases {
		for _, m := range []Mode{TwisterClient, RFC8259} {
			want := tc.client
			if m == RFC8259 {
				want = tc.server
			}
			got := "error"
			if v, err := Parse([]byte(tc.in), m); err == nil {
				got = string(AppendValue(nil, v, false))
			}
			if got != want {
				t.Errorf("%.40q mode %d: %.60q, want %.60q", tc.in, m, got, want)
			}
			if Valid([]byte(tc.in), m) != (want != "error") {
				t.Errorf("Valid(%.40q, %d) disagrees with Parse", tc.in, m)
			}
		}
	}
	// The server's grammar is encoding/json's, nesting bound included.
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	if !Valid([]byte(deep), RFC8259) || !json.Valid([]byte(deep)) {
		t.Error("10000 levels")
	}
}

func TestParseStrings(t *testing.T) {
	cases := map[string]string{
		`"a\"b\\c\/d"`:         `a"b\c/d`,
		`"\b\f\n\r\t"`:         "\b\f\n\r\t",
		`"\u0041\u00e9\u4e2d"`: "A\xe9\x2d", // low byte only, as json_spirit
		`"\x41\xff"`:           "A\xff",
		"\"raw \xff\xfe é\"":   "raw \xff\xfe é",
	}
	for in, want := range cases {
		v, err := parseClient(in)
		if err != nil || v.Str != want {
			t.Errorf("%q: %q %v, want %q", in, v.Str, err, want)
		}
	}
}

func TestAppendValue(t *testing.T) {
	v, err := parseClient(`{"a":[1,{"b":null,"c":[]},"x\u0001y"],"d":{},"r":2.5,"u":18446744073709551615,"t":true}`)
	if err != nil {
		t.Fatal(err)
	}
	compact := string(AppendValue(nil, v, false))
	if want := `{"a":[1,{"b":null,"c":[]},"x\u0001y"],"d":{},"r":2.50000000,"u":18446744073709551615,"t":true}`; compact != want {
		t.Errorf("compact\n got  %s\n want %s", compact, want)
	}
	if m, err := Marshal(v); err != nil || string(m) != compact {
		t.Errorf("Marshal(Value) = %s %v", m, err)
	}
	pretty := string(AppendValue(nil, v, true))
	want := `{
    "a" : [
        1,
        {
            "b" : null,
            "c" : [
            ]
        },
        "x\u0001y"
    ],
    "d" : {
    },
    "r" : 2.50000000,
    "u" : 18446744073709551615,
    "t" : true
}`
	if pretty != want {
		t.Errorf("pretty\n got  %s\n want %s", pretty, want)
	}
}

func TestMembersElements(t *testing.T) {
	ms, err := Members([]byte(` {"id" : 1, "id":[2, {"x":3}], "m":"\u00e9"} `), RFC8259)
	if err != nil {
		t.Fatal(err)
	}
	want := []RawMember{{"id", json.RawMessage(`1`)}, {"id", json.RawMessage(`[2, {"x":3}]`)}, {"m", json.RawMessage(`"\u00e9"`)}}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("Members = %q", ms)
	}
	es, err := Elements([]byte(`[ 1 ,"a", {"b":[]} ]`), RFC8259)
	if err != nil || !reflect.DeepEqual(es, []json.RawMessage{json.RawMessage(`1`), json.RawMessage(`"a"`), json.RawMessage(`{"b":[]}`)}) {
		t.Errorf("Elements = %q %v", es, err)
	}
	if es, err := Elements([]byte(`null`), RFC8259); es != nil || err != nil {
		t.Errorf("Elements(null) = %q %v, want none as encoding/json", es, err)
	}
	for _, bad := range []string{`{}x`, `[1,]`, `{"a":1`} {
		if _, err := Members([]byte(bad), RFC8259); err == nil {
			t.Errorf("Members(%q) passed", bad)
		}
	}
	if _, err := Members([]byte(`[]`), RFC8259); err == nil {
		t.Error("Members of an array")
	}
	if _, err := Elements([]byte(`{}`), RFC8259); err == nil {
		t.Error("Elements of an object")
	}
}

var fuzzSeeds = []string{
	`{"result":{"a":[1,2.5,"x"]},"error":null,"id":1}`, `"\u00e9\x41"`, `[[[]]]`, `-0.0e+1`, "\"\xff\"",
	`"abc"`, `"a\nb\u0041\ud83d\ude00"`, `"\ud800"`, `"\/\\\""`, `"\u12"`, "\f01\v", "\"a\x01\"",
	`{"jsonrpc":"1.0","id":"t","method":"getdirectmsgs","params":["alice",10,[{"username":"bob","max_id":3}]]}`,
}

// FuzzParse: in both modes any input either fails cleanly or round-trips
// through the compact writer to the same value (reals to the 8 decimals
// json_spirit writes), and Valid agrees with Parse. In RFC8259 mode the
// grammar is encoding/json's and, on valid UTF-8, strings decode as
// encoding/json decodes them.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b, RFC8259), json.Valid(b); got != want {
			t.Fatalf("Valid(%q, RFC8259) = %v, encoding/json %v", b, got, want)
		}
		if json.Valid(b) {
			splitLikeEncodingJSON(t, b)
		}
		for _, m := range []Mode{TwisterClient, RFC8259} {
			v, err := Parse(b, m)
			if Valid(b, m) != (err == nil) {
				t.Fatalf("Valid(%q, %d) disagrees with Parse: %v", b, m, err)
			}
			if err != nil {
				continue
			}
			out := AppendValue(nil, v, false)
			v2, err := Parse(out, m)
			if err != nil {
				t.Fatalf("mode %d: re-parse of %q: %v", m, out, err)
			}
			if !reflect.DeepEqual(normalize(v, m), normalize(v2, m)) {
				t.Fatalf("mode %d: round trip changed %q -> %q", m, b, out)
			}
			AppendValue(nil, v, true)
			if m == RFC8259 && v.Kind == KindString && utf8.Valid(b) {
				var want string
				if err := json.Unmarshal(b, &want); err != nil || v.Str != want {
					t.Fatalf("%q: %q, encoding/json %q %v", b, v.Str, want, err)
				}
			}
		}
	})
}

// splitLikeEncodingJSON checks Elements and Members of valid text against
// encoding/json's split (the server used it before tjson read requests).
func splitLikeEncodingJSON(t *testing.T, b []byte) {
	var elems []json.RawMessage
	jerr := json.Unmarshal(b, &elems)
	got, err := Elements(b, RFC8259)
	if (jerr == nil) != (err == nil) || !reflect.DeepEqual(got, elems) {
		t.Fatalf("Elements(%q) = %q %v, encoding/json %q %v", b, got, err, elems, jerr)
	}
	if n, ok := Len(b, RFC8259); ok != (KindOf(b) == KindArray || KindOf(b) == KindObject) || KindOf(b) == KindArray && n != len(elems) {
		t.Fatalf("Len(%q) = %d %v, encoding/json %d elements", b, n, ok, len(elems))
	}
	members, err := Members(b, RFC8259)
	if KindOf(b) != KindObject {
		if err == nil {
			t.Fatalf("Members(%q) of a %v", b, KindOf(b))
		}
		return
	}
	if err != nil {
		t.Fatalf("Members(%q): %v", b, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.Token()
	n := 0
	for i := 0; dec.More(); i++ {
		n++
		tok, _ := dec.Token()
		var v json.RawMessage
		dec.Decode(&v)
		if i >= len(members) || !bytes.Equal(members[i].Value, v) || utf8.Valid(b) && members[i].Key != tok {
			t.Fatalf("Members(%q) = %q, member %d is %q:%s in encoding/json", b, members, i, tok, v)
		}
	}
	if n != len(members) {
		t.Fatalf("Members(%q) = %q, encoding/json has %d", b, members, n)
	}
}

// FuzzStringRoundTrip: any bytes written by the writer read back as the
// same bytes in both modes.
func FuzzStringRoundTrip(f *testing.F) {
	for _, s := range []string{"", "a\"\\\x00\x1f\x7f", "\xff\xe9 é 中 😀", "\\u0041"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		text, err := Marshal(Object{{Key: s, Value: []any{s, int64(len(s))}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []Mode{TwisterClient, RFC8259} {
			v, err := Parse(text, m)
			if err != nil {
				t.Fatalf("mode %d: %q: %v", m, text, err)
			}
			if len(v.Obj) != 1 || v.Obj[0].Key != s || v.Obj[0].Val.Arr[0].Str != s || v.Obj[0].Val.Arr[1].Int != int64(len(s)) {
				t.Fatalf("mode %d: %q read back as %q", m, text, AppendValue(nil, v, false))
			}
		}
	})
}

// normalize drops Raw (the text differs after rewriting) and rounds reals
// to the 8 decimals json_spirit writes.
func normalize(v Value, m Mode) Value {
	v.Raw = nil
	switch v.Kind {
	case KindReal:
		r, _ := Parse(AppendValue(nil, v, false), m)
		r.Raw = nil
		return r
	case KindArray:
		for i := range v.Arr {
			v.Arr[i] = normalize(v.Arr[i], m)
		}
	case KindObject:
		for i := range v.Obj {
			v.Obj[i].Val = normalize(v.Obj[i].Val, m)
		}
	}
	return v
}

func TestLen(t *testing.T) {
	cases := []struct {
		in string
		n  int
		ok bool
	}{
		{`[]`, 0, true}, {` [ ] `, 0, true}, {`[1]`, 1, true}, {`[1,[2,3],{"a":[4,5]},"x,]"]`, 4, true},
		{`{"a":1,"b":{"c":2}}`, 2, true}, {`{}`, 0, true},
		{`[1,]`, 0, false}, {`[1`, 0, false}, {`"a"`, 0, false}, {`1`, 0, false}, {``, 0, false}, {`[1] x`, 0, false},
	}
	for _, c := range cases {
		n, ok := Len([]byte(c.in), RFC8259)
		if n != c.n || ok != c.ok {
			t.Errorf("Len(%q) = %d %v, want %d %v", c.in, n, ok, c.n, c.ok)
		}
	}
}

// TestDeepValidationIsFlat: validating hostile nesting keeps a byte per
// level, not a frame or a Go call (the server validates every body).
func TestDeepValidationIsFlat(t *testing.T) {
	deep := []byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000))
	if n := testing.AllocsPerRun(5, func() {
		if _, ok := Len(deep, RFC8259); !ok {
			t.Fatal("10000 levels refused")
		}
	}); n > 30 {
		t.Errorf("%v allocations to validate 10000 levels", n)
	}
}
