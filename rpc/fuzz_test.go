package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/twgroupd/twgroupd/internal/tjson"
)

// FuzzHandleBody feeds arbitrary request bodies to the JSON-RPC layer:
// never a panic, always a JSON reply ending in "\n".
func FuzzHandleBody(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"1.0","id":"t","method":"getdirectmsgs","params":["alice",10,[{"username":"bob","max_id":3}]]}`,
		`[{"id":1,"method":"help"},"x",{"method":5}]`,
		`{"method":"newdirectmsg","params":["a",1,"b","\u00e9\ud83d\ude00",true]}`,
		`{"method":"getposts","params":[2,[{"username":"a","since_id":-1}],1,0]}`,
		`{"method":"dhtput","params":["a","p","s",{"x":[1,2.5,null]},"a",1]}`,
		`{"method":"getlasthave","params":["a",["b","a"]]}`,
		`{`, `[]`, `null`, `"\x"`, "{\"method\":\"help\",\"params\":[\"\xff\"]}",
	} {
		f.Add([]byte(seed))
	}
	cfg, _, _, _ := node1(f)
	cfg.Logger = discardLogger()
	cfg.Stop = nil
	s, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		reply, status, fwd := s.handleBody(context.Background(), body)
		if fwd != nil {
			t.Fatal("forwarded without an upstream")
		}
		if status == 0 || len(reply) == 0 || reply[len(reply)-1] != '\n' {
			t.Fatalf("status %d reply %q", status, reply)
		}
		if utf8.Valid(body) && !json.Valid(bytes.TrimSpace(reply)) {
			t.Fatalf("invalid JSON reply %q", reply)
		}
	})
}

// FuzzDecodeString checks the raw-byte string decoder against
// encoding/json on valid UTF-8 input.
func FuzzDecodeString(f *testing.F) {
	for _, seed := range []string{`"abc"`, `"a\nb\u0041\ud83d\ude00"`, `"\ud800"`, `"\/\\\""`, "\"\xff\"", `"\u12"`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := decodeString(raw)
		if !json.Valid(raw) || !utf8.Valid(raw) || typeOf(raw) != tjson.KindString {
			return
		}
		var want string
		if jerr := json.Unmarshal(raw, &want); jerr != nil {
			return
		}
		if err != nil {
			t.Fatalf("decodeString(%q): %v", raw, err)
		}
		if got != want {
			t.Fatalf("decodeString(%q) = %q, encoding/json %q", raw, got, want)
		}
	})
}
