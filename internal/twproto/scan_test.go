package twproto

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

// decodePostRef is DecodePost as it was before the scanner: anacrolix's
// decoder for every step. The scanner must agree with it on every input.
func decodePostRef(raw []byte) (*Post, error) {
	if len(raw) == 0 || len(raw) > MaxPostSize {
		return nil, postErrorf("bad bencoded post size")
	}
	top, err := rawDict(raw)
	if err != nil {
		return nil, postErrorf("missing post or signature.")
	}
	if _, err := decodeEntry(raw); err != nil {
		return nil, postErrorf("missing post or signature.")
	}
	upRaw, ok := top["userpost"]
	sig, sigOK := bstring(top["sig_userpost"])
	if !ok || len(upRaw) == 0 || upRaw[0] != 'd' || !sigOK || sig == "" {
		return nil, postErrorf("missing post or signature.")
	}
	up, err := rawDict(upRaw)
	if err != nil {
		return nil, postErrorf("missing post or signature.")
	}
	p := &Post{Raw: raw, UserpostRaw: upRaw, Sig: []byte(sig), Fields: up, K: -1}
	p.N, _ = bstring(up["n"])
	if k, ok := bint(up["k"]); ok {
		p.K = k
	}
	p.Height, _ = bint(up["height"])
	p.Time, _ = bint(up["time"])
	p.Msg, p.HasMsg = bstring(up["msg"])
	p.Msg2, _ = bstring(up["msg2"])
	if d, ok := up["dm"]; ok && len(d) > 0 && d[0] == 'd' {
		if p.DM, err = DecodeEnvelope(d); err != nil {
			return nil, postErrorf("malformed dm: %v", err)
		}
		p.Flags = FlagDM
	} else if pf, ok := up["pfav"]; ok && len(pf) > 0 && pf[0] == 'd' {
		p.Flags = FlagPFav
	} else {
		if _, ok := up["rt"]; ok {
			p.Flags |= FlagRT
		}
		if _, ok := up["fav"]; ok {
			p.Flags |= FlagFav
		}
	}
	return p, nil
}

func sameDecode(t testing.TB, raw []byte) {
	t.Helper()
	got, gerr := DecodePost(raw)
	want, werr := decodePostRef(raw)
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("%q: scanner err %v, reference err %v", raw, gerr, werr)
	}
	if gerr != nil {
		if gerr.Error() != werr.Error() {
			t.Fatalf("%q: scanner err %v, reference err %v", raw, gerr, werr)
		}
		return
	}
	if len(got.Fields) != len(want.Fields) {
		t.Fatalf("%q: fields %v vs %v", raw, got.Fields, want.Fields)
	}
	for k, v := range want.Fields {
		if !bytes.Equal(got.Fields[k], v) {
			t.Fatalf("%q: field %q %q vs %q", raw, k, got.Fields[k], v)
		}
	}
	got.Fields, want.Fields = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n%+v\n%+v", raw, got, want)
	}
}

// scanCorpus is posts from the fuzz corpus and the package's vectors.
func scanCorpus(t testing.TB) [][]byte {
	var out [][]byte
	key, _ := NewPrivateKey()
	env, _ := Encrypt(key.PubKey(), []byte("hello"))
	if raw, err := BuildDMPost(key, "alice", 3, 10, 1_700_000_000, env); err == nil {
		out = append(out, raw)
	}
	for _, v := range []string{
		"d4:sig_userpost3:abc8:userpostd1:ki5e1:n5:alice4:timei9e3:msg2:hiee",
		"d4:sig_userpost3:abc8:userpostd2:rtd1:ai1ee1:ki5e1:n1:aee",
		"d4:sig_userpost3:abc8:userpostd3:favd1:ai1ee1:ki99999999999999999999e1:n1:aee",
		"d4:sig_userpost3:abc8:userpostd2:dmd4:body0:3:key1:x3:mac0:4:origi-3ee1:ki1eee",
		"d4:sig_userpost3:abc8:userpostd4:pfavd1:ai1ee1:ki1eee",
		"d8:userpostd1:ki5ee4:sig_userpost3:abce",
		"d4:sig_userpost3:abc8:userpostd1:ki05eee",
		"d4:sig_userpost3:abc8:userpostd1:ki-0eee",
		"d4:sig_userpost3:abc8:userpostd1:kiee1:n1:aee",
		"d4:sig_userpost03:abc8:userpostd1:ki1eee",
		"d4:sig_userpost3:abc8:userpostd1:ki1e1:ki2eee",
		"d4:sig_userpost3:abc8:userpostd1:ki1eeee",
		"d4:sig_userpost3:abc8:userpostd1:ki1ee",
		"d4:sig_userpost3:abc8:userpostdi1ei1eee",
		"d4:sig_userpost3:abc8:userpostd1:kli1ei-2e0:dee1:ki1eee",
		"d4:sig_userpost3:abc8:userpostd1:k" + string(bytes.Repeat([]byte("l"), 70)) + string(bytes.Repeat([]byte("e"), 70)) + "ee",
	} {
		out = append(out, []byte(v))
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "*", "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// Go fuzz corpus files: a header line then []byte("...") lines.
		for _, line := range bytes.Split(b, []byte("\n")) {
			if i := bytes.Index(line, []byte(`[]byte(`)); i >= 0 {
				if s, err := unquoteGo(line[i+7 : len(line)-1]); err == nil {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// TestScanMatchesReference: DecodePost with the scanner and with
// anacrolix's decoder agree on a corpus and on many mutations of it.
func TestScanMatchesReference(t *testing.T) {
	corpus := scanCorpus(t)
	r := rand.New(rand.NewPCG(13, 14))
	alphabet := []byte("dlie0123456789:-x")
	for _, raw := range corpus {
		sameDecode(t, raw)
		for range 300 {
			m := bytes.Clone(raw)
			for range 1 + r.IntN(3) {
				if len(m) == 0 {
					break
				}
				i := r.IntN(len(m))
				switch r.IntN(3) {
				case 0:
					m[i] = alphabet[r.IntN(len(alphabet))]
				case 1:
					m = append(m[:i], m[i+1:]...)
				default:
					m = append(m[:i], append([]byte{alphabet[r.IntN(len(alphabet))]}, m[i:]...)...)
				}
			}
			sameDecode(t, m)
		}
	}
	// Random short bencode-like strings for the scanner alone.
	for range 20000 {
		b := make([]byte, 1+r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		_, werr := decodeEntry(b)
		if gerr := scanEntry(b); (gerr == nil) != (werr == nil) {
			t.Fatalf("%q: scan %v, decodeEntry %v", b, gerr, werr)
		}
	}
}

// FuzzDecodePostScan: the scanner agrees with the reference decoder.
func FuzzDecodePostScan(f *testing.F) {
	for _, raw := range scanCorpus(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) { sameDecode(t, raw) })
}

func BenchmarkDecodePost(b *testing.B) {
	key, _ := NewPrivateKey()
	env, _ := Encrypt(key.PubKey(), EncodeMessage("a typical direct message of some sixty bytes", "bob"))
	raw, err := BuildDMPost(key, "alice", 3, 10, 1_700_000_000, env)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodePostRef(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodePost(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func unquoteGo(b []byte) ([]byte, error) {
	s, err := strconv.Unquote(string(b))
	return []byte(s), err
}
