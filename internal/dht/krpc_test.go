package dht

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

type capturedPacket struct {
	Src, Dst string
	Hex      string
	Summary  struct {
		Type   string
		Method string
	}
}

func loadPackets(t testing.TB) []capturedPacket {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "testdata", "dht", "dht_packets.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []capturedPacket
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var p capturedPacket
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) != 220 {
		t.Fatalf("got %d packets, want 220", len(out))
	}
	return out
}

// Every captured twisterd datagram decodes, and re-encoding the decoded
// message reproduces twisterd's bytes exactly.
func TestCapturedPacketsRoundTrip(t *testing.T) {
	for i, p := range loadPackets(t) {
		raw, err := hex.DecodeString(p.Hex)
		if err != nil {
			t.Fatal(err)
		}
		m, err := DecodeMsg(raw)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if m.Z != "q" && m.Z != "r" {
			t.Fatalf("packet %d: z=%q", i, m.Z)
		}
		if len(m.T) != 2 || !bytes.Equal(m.V, clientVersion) {
			t.Fatalf("packet %d: t=%x v=%x", i, m.T, m.V)
		}
		if m.Z == "q" && (m.X == nil || len(m.X.ID) != 20 || m.Q != p.Summary.Method) {
			t.Fatalf("packet %d: bad query %+v", i, m)
		}
		if m.Z == "r" && (m.R == nil || len(m.R.ID) != 20) {
			t.Fatalf("packet %d: bad response", i)
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !bytes.Equal(out, raw) {
			t.Fatalf("packet %d: re-encoded\n%q\nwant\n%q", i, out, raw)
		}
	}
}
