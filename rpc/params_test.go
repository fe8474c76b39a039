package rpc

import (
	"encoding/json"
	"testing"
)

func TestParamsScan(t *testing.T) {
	p := params{json.RawMessage(`"alice"`), json.RawMessage(`5`), json.RawMessage(`["bob"]`)}
	var user string
	var k int64
	var list []string
	flag := true
	if err := p.scan(&user, &k, &list, &flag); err != nil {
		t.Fatal(err)
	}
	if user != "alice" || k != 5 || len(list) != 1 || list[0] != "bob" || !flag {
		t.Fatalf("scanned %q %d %q %v", user, k, list, flag)
	}
	// The first wrong type is twisterd's error.
	err := p.scan(&user, &user)
	if e, ok := err.(*Error); !ok || e.Code != CodeMisc || e.Message != "value is type int, expected str" {
		t.Fatalf("type error: %v", err)
	}
	// A destination the accessors do not know is an error, not a panic.
	var f float64
	if err := p.scan(&f); err == nil {
		t.Fatal("scan into *float64 accepted")
	}
}
