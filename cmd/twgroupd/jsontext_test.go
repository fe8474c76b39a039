package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/twgroupd/twgroupd/internal/tjson"
)

func TestParseJSONKinds(t *testing.T) {
	cases := []struct {
		in   string
		kind tjson.Kind
	}{
		{"{}", tjson.KindObject}, {" [ ] ", tjson.KindArray}, {`"x"`, tjson.KindString}, {"true", tjson.KindBool}, {"false", tjson.KindBool},
		{"0", tjson.KindInt}, {"-12", tjson.KindInt}, {"18446744073709551615", tjson.KindInt}, {"1.0", tjson.KindReal}, {"1e3", tjson.KindReal},
		{"-0.5E-2", tjson.KindReal}, {"null", tjson.KindNull},
	}
	for _, tc := range cases {
		v, err := parseJSON(tc.in)
		if err != nil || v.kind != tc.kind {
			t.Errorf("%q: kind %v err %v, want %v", tc.in, v.kind, err, tc.kind)
		}
	}
	for _, bad := range []string{"", "5x", "truex", "[1,]", "{\"a\"}", "{\"a\":1,}", "\"abc", "\"\\q\"", "\"\\u12\"",
		"01x", "-", "1.", ".5", "1e", "18446744073709551616", "nul", "[1 2]", "{1:2}", strings.Repeat("[", 600) + strings.Repeat("]", 600)} {
		if _, err := parseJSON(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParseJSONStrings(t *testing.T) {
	cases := map[string]string{
		`"a\"b\\c\/d"`:         `a"b\c/d`,
		`"\b\f\n\r\t"`:         "\b\f\n\r\t",
		`"\u0041\u00e9\u4e2d"`: "A\xe9\x2d", // low byte only, as json_spirit
		`"\x41\xff"`:           "A\xff",
		"\"raw \xff\xfe é\"":   "raw \xff\xfe é",
	}
	for in, want := range cases {
		v, err := parseJSON(in)
		if err != nil || v.s != want {
			t.Errorf("%q: %q %v, want %q", in, v.s, err, want)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	v, err := parseJSON(`{"a":[1,{"b":null,"c":[]},"x\u0001y"],"d":{},"r":2.5,"u":18446744073709551615,"t":true}`)
	if err != nil {
		t.Fatal(err)
	}
	compact := string(writeJSON(nil, v, false))
	if want := `{"a":[1,{"b":null,"c":[]},"x\u0001y"],"d":{},"r":2.50000000,"u":18446744073709551615,"t":true}`; compact != want {
		t.Errorf("compact\n got  %s\n want %s", compact, want)
	}
	pretty := string(writeJSON(nil, v, true))
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

func TestConvertTo(t *testing.T) {
	cases := []struct {
		in   string
		kind convKind
		want string // compact JSON, or "error: ..."
	}{
		{"5", convInt, "5"},
		{`"5"`, convInt, "5"},
		{`"\"5\""`, convInt, "5"},
		{"-1", convInt, "-1"},
		{"5.0", convInt, "error: value is type real, expected int"},
		{"true", convInt, "error: value is type bool, expected int"},
		{"true", convBool, "true"},
		{"1", convBool, "error: value is type int, expected bool"},
		{"[1]", convArray, "[1]"},
		{"{}", convArray, "error: value is type obj, expected array"},
		{`{"b":1,"a":2}`, convObject, `{"b":1,"a":2}`},
		{"2", convReal, "2.00000000"},
		{"abc", convValue, "error: Error parsing JSON:abc"},
		{`"abc"`, convValue, `"abc"`},
		{`"abc"`, convInt, "error: Error parsing JSON:abc"},
		{"null", convInt, "error: value is type null, expected int"},
	}
	for _, tc := range cases {
		v, err := convertTo(tc.in, tc.kind)
		got := ""
		if err != nil {
			got = "error: " + err.Error()
		} else {
			got = string(writeJSON(nil, v, false))
		}
		if got != tc.want {
			t.Errorf("convertTo(%q, %d) = %s, want %s", tc.in, tc.kind, got, tc.want)
		}
	}
}

func TestNormalizeArgs(t *testing.T) {
	root := newRootCmd(nil, nil, nil)
	cases := []struct{ in, want []string }{
		{[]string{"-rpcuser=x", "-datadir=/d", "getinfo"}, []string{"--rpcuser=x", "--datadir=/d", "getinfo", "--"}},
		{[]string{"--datadir", "/d", "-debug", "creategroup", "-x", "--y"}, []string{"--datadir", "/d", "--debug", "creategroup", "--", "-x", "--y"}},
		{[]string{"-h"}, []string{"-h"}},
		{[]string{"-?"}, []string{"--help"}},
		{[]string{"newdirectmsg", "-h"}, []string{"newdirectmsg", "--help"}},
		{[]string{"newdirectmsg", "a", "-h"}, []string{"newdirectmsg", "--", "a", "-h"}},
		{[]string{"-rpcport=1", "serve", "-debug"}, []string{"--rpcport=1", "serve", "--debug"}},
		{[]string{"decodepost", "-key=a=b", "--pubkey", "c=d", "--", "-x"}, []string{"decodepost", "--key=a=b", "--pubkey", "c=d", "--", "-x"}},
		{[]string{"unknownmethod", "1"}, []string{"unknownmethod", "--", "1"}},
		{[]string{"help", "getinfo"}, []string{"help", "--", "getinfo"}},
		{[]string{"--", "getinfo", "-1"}, []string{"getinfo", "--", "-1"}},
		{nil, []string{}},
	}
	for _, tc := range cases {
		if got := normalizeArgs(root, tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("normalizeArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzParseJSON: any input either fails cleanly or round-trips through the
// compact writer to the same value.
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{`{"result":{"a":[1,2.5,"x"]},"error":null,"id":1}`, `"\u00e9\x41"`, `[[[]]]`, `-0.0e+1`, "\"\xff\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseJSON(s)
		if err != nil {
			return
		}
		out := writeJSON(nil, v, false)
		v2, err := parseJSON(string(out))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
		if !reflect.DeepEqual(normalizeReals(v), normalizeReals(v2)) {
			t.Fatalf("round trip changed %q -> %q", s, out)
		}
		writeJSON(nil, v, true)
	})
}

// normalizeReals rounds reals to the 8 decimals json_spirit writes.
func normalizeReals(v jvalue) jvalue {
	switch v.kind {
	case tjson.KindReal:
		r, _ := parseJSON(string(writeJSON(nil, v, false)))
		return r
	case tjson.KindArray:
		for i := range v.arr {
			v.arr[i] = normalizeReals(v.arr[i])
		}
	case tjson.KindObject:
		for i := range v.obj {
			v.obj[i].val = normalizeReals(v.obj[i].val)
		}
	}
	return v
}
