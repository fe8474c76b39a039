package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"unicode/utf8"
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
