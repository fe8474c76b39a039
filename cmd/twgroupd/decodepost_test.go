package main

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/twgroupd/twgroupd/internal/tjson"
)

// postVector is the part of a testdata/vectors post file decodepost needs.
type postVector struct {
	Author    string         `json:"author"`
	PostHex   string         `json:"post_bencoded_hex"`
	Decoded   map[string]any `json:"decoded"`
	Signature struct {
		Pubkey string `json:"signer_pubkey_hex"`
	} `json:"signature"`
	DM *struct {
		KeyOf        string `json:"decrypts_with_key_of"`
		WIF          string `json:"recipient_privkey_wif"`
		PlaintextHex string `json:"plaintext_hex"`
		Payload      any    `json:"plaintext_bencoded_payload"`
	} `json:"dm_decryption"`
}

type vectorKeys struct {
	Users map[string]struct {
		WIF    string `json:"privkey_wif"`
		Pubkey string `json:"pubkey_compressed_hex"`
	} `json:"users"`
}

func vectorsDir() string { return filepath.Join("..", "..", "testdata", "vectors") }

func loadJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// postVectors returns every vector file that carries a post.
func postVectors(t *testing.T) map[string]postVector {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(vectorsDir(), "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]postVector{}
	for _, f := range files {
		var v postVector
		loadJSON(t, f, &v)
		if v.PostHex != "" && v.Author != "" {
			out[filepath.Base(f)] = v
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d post vectors found", len(out))
	}
	return out
}

// flattenHex turns the vectors' {"hex": x} leaves into x, which is how
// twisterd's hexcape renders binary fields.
func flattenHex(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if h, ok := x["hex"]; ok && len(x) == 1 {
			return h
		}
		for k, e := range x {
			x[k] = flattenHex(e)
		}
	case []any:
		for i, e := range x {
			x[i] = flattenHex(e)
		}
	}
	return v
}

type decodeOutput struct {
	Post      any   `json:"post"`
	SigValid  *bool `json:"signature_valid"`
	Decrypted *struct {
		Key          string `json:"key"`
		PlaintextHex string `json:"plaintext_hex"`
		Payload      any    `json:"payload"`
	} `json:"decrypted"`
}

func decodeRun(t *testing.T, stdin string, args ...string) (decodeOutput, result) {
	t.Helper()
	r := runBin(t, stdin, append([]string{"decodepost"}, args...)...)
	var out decodeOutput
	if r.status == 0 {
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
		}
		if strings.Count(r.stdout, "\n}\n") != 1 || !strings.HasSuffix(r.stdout, "\n}\n") {
			t.Fatalf("want one JSON object:\n%s", r.stdout)
		}
	}
	return out, r
}

func TestDecodePostVectors(t *testing.T) {
	var keys vectorKeys
	loadJSON(t, filepath.Join(vectorsDir(), "keys.json"), &keys)
	for name, v := range postVectors(t) {
		t.Run(name, func(t *testing.T) {
			args := []string{"-pubkey=" + v.Author + "=" + v.Signature.Pubkey}
			if v.DM != nil {
				// A wrong key first: decodepost must skip it and name the right one.
				for user, k := range keys.Users {
					if user != v.DM.KeyOf {
						args = append(args, "--key", user+"="+k.WIF)
						break
					}
				}
				args = append(args, "-key="+v.DM.KeyOf+"="+v.DM.WIF)
			}
			out, r := decodeRun(t, "", append(args, v.PostHex)...)
			if r.status != 0 {
				t.Fatalf("status %d: %s", r.status, r.stderr)
			}
			if want := flattenHex(v.Decoded); !reflect.DeepEqual(out.Post, want) {
				t.Errorf("post\n got  %v\n want %v", out.Post, want)
			}
			if out.SigValid == nil || !*out.SigValid {
				t.Errorf("signature_valid %v, want true", out.SigValid)
			}
			if v.DM == nil {
				if out.Decrypted != nil {
					t.Errorf("public post decrypted: %+v", out.Decrypted)
				}
				return
			}
			if out.Decrypted == nil {
				t.Fatal("decrypted null with the recipient's key")
			}
			if out.Decrypted.Key != v.DM.KeyOf || out.Decrypted.PlaintextHex != v.DM.PlaintextHex {
				t.Errorf("decrypted %+v, want key %s plaintext %s", out.Decrypted, v.DM.KeyOf, v.DM.PlaintextHex)
			}
			if !reflect.DeepEqual(out.Decrypted.Payload, v.DM.Payload) {
				t.Errorf("payload %v, want %v", out.Decrypted.Payload, v.DM.Payload)
			}
		})
	}
}

func TestDecodePostWrongKeyAndSignature(t *testing.T) {
	var v postVector
	loadJSON(t, filepath.Join(vectorsDir(), "dm_alice_k2.json"), &v)
	var keys vectorKeys
	loadJSON(t, filepath.Join(vectorsDir(), "keys.json"), &keys)

	// The DM is to bob: alice's own key does not open it. The post arrives
	// on stdin this time, with surrounding whitespace.
	out, r := decodeRun(t, "\n"+v.PostHex+"\n", "--key", "alice="+keys.Users["alice"].WIF,
		"--pubkey", "alice="+keys.Users["bob"].Pubkey)
	if r.status != 0 {
		t.Fatalf("status %d: %s", r.status, r.stderr)
	}
	if out.Decrypted != nil {
		t.Fatalf("decrypted with the wrong key: %+v", out.Decrypted)
	}
	if out.SigValid == nil || *out.SigValid {
		t.Fatalf("signature_valid %v against bob's key, want false", out.SigValid)
	}
	if !strings.Contains(r.stdout, `"decrypted" : null`) {
		t.Fatalf("decrypted not null:\n%s", r.stdout)
	}

	// No author key given: signature_valid is null; no keys: decrypted null.
	out, r = decodeRun(t, "", "--pubkey", "bob="+keys.Users["bob"].Pubkey, v.PostHex)
	if r.status != 0 || out.SigValid != nil || out.Decrypted != nil ||
		!strings.Contains(r.stdout, `"signature_valid" : null`) {
		t.Fatalf("without keys: %+v %+v", out, r)
	}
}

func TestDecodePostMalformed(t *testing.T) {
	var v postVector
	loadJSON(t, filepath.Join(vectorsDir(), "dm_alice_k2.json"), &v)
	raw, err := hex.DecodeString(v.PostHex)
	if err != nil {
		t.Fatal(err)
	}
	const secretWIF = "L5k7ajAiJxiSm8CEHGJf5jALJXyWZmsiQ9Ngy1KJ5jZkWNup8bUX" // bad checksum
	cases := []struct {
		name  string
		stdin string
		args  []string
	}{
		{"not hex", "", []string{"zz"}},
		{"odd hex", "", []string{"abc"}},
		{"empty stdin", "", nil},
		{"truncated post", "", []string{hex.EncodeToString(raw[:len(raw)/2])}},
		{"not a dict", "", []string{hex.EncodeToString([]byte("i5e"))}},
		{"oversized", "", []string{strings.Repeat("00", 4096)}},
		{"huge stdin", strings.Repeat("0", 100<<10), nil},
		{"bad pubkey", "", []string{"--pubkey", "alice=zz", v.PostHex}},
		{"pubkey not a point", "", []string{"--pubkey", "alice=02ff", v.PostHex}},
		{"pubkey without user", "", []string{"--pubkey", "0289", v.PostHex}},
		{"bad wif", "", []string{"--key", "alice=" + secretWIF, v.PostHex}},
		{"key without name", "", []string{"--key", secretWIF, v.PostHex}},
		{"two posts", "", []string{v.PostHex, v.PostHex}},
	}
	for _, tc := range cases {
		_, r := decodeRun(t, tc.stdin, tc.args...)
		if r.status == 0 {
			t.Errorf("%s: exit 0, stdout %q", tc.name, r.stdout)
			continue
		}
		if r.stdout != "" || !strings.HasPrefix(r.stderr, "error: ") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%s: want one error line, got stdout %q stderr %q", tc.name, r.stdout, r.stderr)
		}
		if strings.Contains(r.stderr, secretWIF) {
			t.Errorf("%s: error repeats the WIF: %q", tc.name, r.stderr)
		}
	}
}

// FuzzDecodePost: any bytes give an error or one rendered object, never a
// panic; the rendering of twproto's hexcape must always parse.
func FuzzDecodePost(f *testing.F) {
	for _, name := range []string{"dm_alice_k2.json", "group_members_alice_k5.json", "public_post_bob_k5.json"} {
		b, err := os.ReadFile(filepath.Join(vectorsDir(), name))
		if err != nil {
			f.Fatal(err)
		}
		var v postVector
		if err := json.Unmarshal(b, &v); err != nil {
			f.Fatal(err)
		}
		raw, err := hex.DecodeString(v.PostHex)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte("d12:sig_userpost0:8:userpostdee"))
	keys, err := parseKeys([]string{"bob=KwMZKH3afx3A6mxmsb3feBU1R7srkURvpZu6MEJdpG7stxJPqWTL"})
	if err != nil {
		f.Fatal(err)
	}
	pubs, err := parsePubKeys([]string{"alice=0289466f49cd83149b97fb61513d87e43ea62cafe646c42e7f53ac84778e41b475"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := decodePost(raw, pubs, keys)
		if err != nil {
			return
		}
		if out.Kind != tjson.KindObject || len(out.Obj) != 3 {
			t.Fatalf("output %s", tjson.AppendValue(nil, out, false))
		}
		if _, err := tjson.Parse(tjson.AppendValue(nil, out, true), tjson.TwisterClient); err != nil {
			t.Fatalf("pretty output does not parse: %v", err)
		}
	})
}
