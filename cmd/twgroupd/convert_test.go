package main

import (
	"reflect"
	"testing"

	"github.com/twgroupd/twgroupd/internal/tjson"
)

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
			got = string(tjson.AppendValue(nil, v, false))
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
