package twproto

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

type dhtVector struct {
	File    string
	JSON    json.RawMessage `json:"dhtget_json"`
	PHex    string          `json:"p_bencoded_hex"`
	ItemHex string          `json:"item_bencoded_hex"`
	Target  string          `json:"dht_target_hash_hex"`
	Decoded struct {
		P struct {
			V json.RawMessage `json:"v"`
		} `json:"p"`
	} `json:"-"`
}

func loadDHTVectors(t testing.TB) []dhtVector {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(vectorDir, "dht_*.json"))
	if len(files) != 3 {
		t.Fatalf("found %d dht vectors, want 3", len(files))
	}
	var out []dhtVector
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v dhtVector
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := json.Unmarshal(v.JSON, &v.Decoded); err != nil {
			t.Fatal(err)
		}
		v.File = filepath.Base(f)
		out = append(out, v)
	}
	return out
}

// The recorded items decode, verify against the registered keys, re-encode
// byte-identically and render as twisterd's dhtget printed them.
func TestDHTItemVectors(t *testing.T) {
	keys := loadKeys(t)
	ctx := context.Background()
	for _, v := range loadDHTVectors(t) {
		raw := mustHex(t, v.ItemHex)
		it, err := DecodeDHTItem(raw)
		if err != nil {
			t.Fatalf("%s: %v", v.File, err)
		}
		if !bytes.Equal(it.Raw, raw) {
			t.Errorf("%s: item re-encoded differently", v.File)
		}
		if !bytes.Equal(it.P.Raw, mustHex(t, v.PHex)) {
			t.Errorf("%s: p bytes differ", v.File)
		}
		if h := it.P.Target.Hash(); hex.EncodeToString(h[:]) != v.Target {
			t.Errorf("%s: target hash %x, want %s", v.File, h, v.Target)
		}
		if !bytes.Equal(it.P.Target.Bencode(), it.P.TargetRaw) || it.P.TargetKeys != 3 {
			t.Errorf("%s: target not canonical", v.File)
		}
		if err := it.Verify(ctx, keys); err != nil {
			t.Errorf("%s: verify: %v", v.File, err)
		}
		// Another user's key must not verify it.
		other := "alice"
		if it.SigUser == "alice" {
			other = "bob"
		}
		if err := VerifyDHTSignature(ctx, keys, it.P.Raw, it.SigP, other); !errors.Is(err, ErrDHTSignature) {
			t.Errorf("%s: verified as %s: %v", v.File, other, err)
		}
		if err := VerifyDHTSignature(ctx, keys, it.P.Raw, it.SigP, "nobody"); !errors.Is(err, ErrDHTSignature) {
			t.Errorf("%s: unknown user: %v", v.File, err)
		}
		// Rebuilding p from its parts gives the signed bytes.
		seq := int64(-1)
		if it.P.HasSeq {
			seq = it.P.Seq
		}
		if got := BuildDHTP(it.P.Target, it.P.V, seq, it.P.Height, it.P.Time); !bytes.Equal(got, it.P.Raw) {
			t.Errorf("%s: BuildDHTP\n%q\nwant\n%q", v.File, got, it.P.Raw)
		}
		// dhtget's JSON.
		js, err := HexcapeDHTItem(raw)
		if err != nil {
			t.Fatalf("%s: hexcape: %v", v.File, err)
		}
		var want bytes.Buffer
		if err := json.Compact(&want, v.JSON); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(js, want.Bytes()) {
			t.Errorf("%s: hexcape\n%s\nwant\n%s", v.File, js, want.Bytes())
		}
		// dhtput's value path: the JSON v (hexcaped) turns back into p.v.
		val, err := DHTValueFromJSON(v.Decoded.P.V)
		if err != nil {
			t.Fatalf("%s: value: %v", v.File, err)
		}
		if !bytes.Equal(val, it.P.V) {
			t.Errorf("%s: value from JSON\n%q\nwant\n%q", v.File, val, it.P.V)
		}
	}
}

func TestDHTValueFromJSON(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`"abc"`, "3:abc"},
		{`42`, "i42e"},
		{`-7`, "i-7e"},
		{`1.5`, "15:<uninitialized>"},
		{`true`, "15:<uninitialized>"},
		{`null`, "15:<uninitialized>"},
		{`[1,"a",[]]`, "li1e1:alee"},
		{`{"b":1,"a":2,"b":3}`, "d1:ai2e1:bi3ee"},
		{`{"sig_userpost":"41 42zz","userpost":{"dm":{"key":"4344"},"sig_rt":"45"}}`,
			"d12:sig_userpost2:AB8:userpostd2:dmd3:key2:CDe6:sig_rt1:Eee"},
		{`{"sig_wort":"41"}`, "d8:sig_wort2:41e"},
	} {
		got, err := DHTValueFromJSON(json.RawMessage(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("%s: got %q, want %q", c.in, got, c.want)
		}
	}
	for _, bad := range []string{``, `{`, `[1,`, `"a" "b"`, `{"a":}`} {
		if _, err := DHTValueFromJSON(json.RawMessage(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseDHTPErrors(t *testing.T) {
	target := DHTTarget{N: "alice", R: "profile", T: "s"}
	good := BuildDHTP(target, []byte("1:x"), 1, 10, 1000)
	if _, err := ParseDHTP(good); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ raw, msg string }{
		{"d6:heighti1e4:timei1e6:targetd1:n1:a1:r1:b1:t1:see", "missing 'v' key"},
		{"d6:heighti1e6:targetd1:n1:a1:r1:b1:t1:se1:v1:xe", "missing 'time' key"},
		{"d4:timei1e6:targetd1:n1:a1:r1:b1:t1:se1:v1:xe", "missing 'height' key"},
		{"d6:heighti1e4:timei1e1:v1:xe", "missing 'target' key"},
		{"d6:heighti1e6:targetd1:n1:a1:r1:be4:timei1e1:v1:xe", "missing 't' key"},
		{"d6:heighti1e6:targetd1:ni1e1:r1:b1:t1:se4:timei1e1:v1:xe", "missing 'n' key"},
		{"le", "missing 'p' key"},
	} {
		_, err := ParseDHTP([]byte(c.raw))
		if err == nil || err.Error() != c.msg {
			t.Errorf("%s: err %v, want %q", c.raw, err, c.msg)
		}
	}
}

func FuzzDHTItem(f *testing.F) {
	for _, name := range []string{"dht_profile_alice.json", "dht_post1_alice.json", "dht_mention_multi_alice.json"} {
		b, err := os.ReadFile(filepath.Join(vectorDir, name))
		if err != nil {
			f.Fatal(err)
		}
		var v dhtVector
		if err := json.Unmarshal(b, &v); err != nil {
			f.Fatal(err)
		}
		raw, _ := hex.DecodeString(v.ItemHex)
		f.Add(raw)
	}
	f.Add([]byte("d1:pd6:targetd1:n1:a1:r7:tracker1:t1:me1:vd9:followersi2eeee"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if it, err := DecodeDHTItem(raw); err == nil {
			again, err := DecodeDHTItem(it.Raw)
			if err != nil || !bytes.Equal(again.Raw, it.Raw) {
				t.Fatalf("re-decode of canonical item: %v", err)
			}
		}
		HexcapeDHTItem(raw)
	})
}
