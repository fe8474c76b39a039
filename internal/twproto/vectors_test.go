package twproto

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const vectorDir = "../../testdata/vectors"

type postVector struct {
	File        string
	Author      string `json:"author"`
	K           int64  `json:"k"`
	InfoHash    string `json:"torrent_infohash_hex"`
	PostHex     string `json:"post_bencoded_hex"`
	UserpostHex string `json:"userpost_bencoded_hex"`
	Kind        string `json:"kind"`
	Signature   struct {
		Sig    string `json:"sig_userpost_hex"`
		Signer string `json:"signer_pubkey_hex"`
		Hash   string `json:"signed_message_hash_hex"`
	} `json:"signature"`
	DMDecryption *struct {
		WIF       string          `json:"recipient_privkey_wif"`
		Plaintext string          `json:"plaintext_hex"`
		Payload   json.RawMessage `json:"plaintext_bencoded_payload"`
	} `json:"dm_decryption"`
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func loadPostVectors(t testing.TB) []postVector {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(vectorDir, "*.json"))
	var out []postVector
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v postVector
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if v.PostHex == "" {
			continue
		}
		v.File = filepath.Base(f)
		out = append(out, v)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d post vectors", len(out))
	}
	return out
}

// vectorKeys is the registry of the recorded network: alice and bob,
// registered at height 1 (the vectors' posts have heights >= 1).
type vectorKeys map[string][]byte

func (v vectorKeys) UserKey(_ context.Context, user string, _ int64) (UserKey, error) {
	pk, ok := v[user]
	if !ok {
		return UserKey{}, ErrUnknownUser
	}
	return UserKey{PubKey: pk, RegHeight: 1}, nil
}
func (v vectorKeys) BestHeight(context.Context) (int64, error) { return 0, nil }

func loadKeys(t testing.TB) vectorKeys {
	b, err := os.ReadFile(filepath.Join(vectorDir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Users map[string]struct {
			WIF    string `json:"privkey_wif"`
			Pub    string `json:"pubkey_compressed_hex"`
			IH     string `json:"torrent_infohash_hex"`
			Secret string `json:"privkey_hex"`
		} `json:"users"`
	}
	if err := json.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	out := vectorKeys{}
	for name, u := range k.Users {
		key, err := ParseWIF(u.WIF)
		if err != nil {
			t.Fatalf("%s wif: %v", name, err)
		}
		if got := hex.EncodeToString(key.PubKey()); got != u.Pub {
			t.Errorf("%s pubkey from WIF = %s, want %s", name, got, u.Pub)
		}
		if got := hex.EncodeToString(key.Secret()); got != u.Secret {
			t.Errorf("%s secret = %s, want %s", name, got, u.Secret)
		}
		if key.WIF() != u.WIF {
			t.Errorf("%s WIF round trip = %s", name, key.WIF())
		}
		if u.IH != "" {
			ih := SwarmInfoHash(name)
			if got := hex.EncodeToString(ih[:]); got != u.IH {
				t.Errorf("%s infohash = %s, want %s", name, got, u.IH)
			}
		}
		if name != "group" {
			out[name] = mustHex(t, u.Pub)
		}
	}
	return out
}

func TestVectors(t *testing.T) {
	keys := loadKeys(t)
	for _, v := range loadPostVectors(t) {
		t.Run(v.File, func(t *testing.T) {
			raw := mustHex(t, v.PostHex)
			p, err := ValidatePost(context.Background(), raw, v.Author, v.K, keys)
			if err != nil {
				t.Fatalf("ValidatePost: %v", err)
			}
			if !bytes.Equal(p.UserpostRaw, mustHex(t, v.UserpostHex)) {
				t.Fatal("userpost raw span differs")
			}
			if hex.EncodeToString(p.Sig) != v.Signature.Sig {
				t.Fatal("sig differs")
			}
			h := MessageHash(p.UserpostRaw)
			if hex.EncodeToString(h[:]) != v.Signature.Hash {
				t.Errorf("hash = %x, want %s", h, v.Signature.Hash)
			}
			if err := VerifySignature(p.UserpostRaw, p.Sig, mustHex(t, v.Signature.Signer)); err != nil {
				t.Errorf("verify: %v", err)
			}
			ih := SwarmInfoHash(v.Author)
			if hex.EncodeToString(ih[:]) != v.InfoHash {
				t.Errorf("infohash %x want %s", ih, v.InfoHash)
			}
			// Rebuilding from the decoded fields gives the recorded bytes.
			if p.IsDM() {
				up := BuildDMUserpost(p.N, p.K, p.Height, p.Time, p.DM)
				if !bytes.Equal(up, p.UserpostRaw) {
					t.Errorf("rebuilt DM userpost differs:\n got %q\nwant %q", up, p.UserpostRaw)
				}
			} else if !isCanonicalDict(p.UserpostRaw) {
				t.Error("public userpost is not canonical bencode")
			}
			if !bytes.Equal(WrapSignedPost(p.Sig, p.UserpostRaw), raw) {
				t.Error("rewrapped post differs")
			}
			if v.DMDecryption == nil {
				return
			}
			key, err := ParseWIF(v.DMDecryption.WIF)
			if err != nil {
				t.Fatal(err)
			}
			plain, err := p.DM.Decrypt(key)
			if err != nil {
				t.Fatalf("decrypt: %v", err)
			}
			if hex.EncodeToString(plain) != v.DMDecryption.Plaintext {
				t.Fatalf("plaintext %x", plain)
			}
			checkPayload(t, DecodePayload(plain), v.DMDecryption.Payload)
			// Every other vector key fails with a MAC error.
			for name, other := range otherKeys(t) {
				if other.WIF() == key.WIF() {
					continue
				}
				if _, err := p.DM.Decrypt(other); err != ErrMAC {
					t.Errorf("key %s: err %v, want ErrMAC", name, err)
				}
			}
		})
	}
}

func otherKeys(t testing.TB) map[string]*PrivateKey {
	out := map[string]*PrivateKey{}
	for name, wif := range map[string]string{
		"alice": "L5k7ajAiJxiSm8CEHGJf5jALJXyWZmsiQ9Ngy1KJ5jZkWNup8bUK",
		"bob":   "KwMZKH3afx3A6mxmsb3feBU1R7srkURvpZu6MEJdpG7stxJPqWTL",
		"group": "KzTAkjGZu9xbVgeFyuWkcR4A3X7U8cvigCsBYdKoZrx6p4Mxc8m8",
	} {
		k, err := ParseWIF(wif)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = k
	}
	return out
}

func checkPayload(t *testing.T, p Payload, want json.RawMessage) {
	t.Helper()
	var w map[string]any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("payload json: %v", err)
	}
	switch {
	case w["group_invite"] != nil:
		gi := w["group_invite"].(map[string]any)
		if p.Kind != PayloadGroupInvite || !p.InviteValid || p.InviteDesc != gi["desc"] || p.InviteKey != gi["key"] {
			t.Errorf("payload %+v, want invite %v", p, gi)
		}
	case w["group_members"] != nil:
		var members []string
		for _, m := range w["group_members"].([]any) {
			members = append(members, m.(string))
		}
		if p.Kind != PayloadGroupMembers || !reflect.DeepEqual(p.Members, members) {
			t.Errorf("payload %+v, want members %v", p, members)
		}
	default:
		if p.Kind != PayloadText || !p.NewFormat || p.Msg != w["msg"] || p.To != w["to"] {
			t.Errorf("payload %+v, want %v", p, w)
		}
		if !bytes.Equal(EncodeMessage(p.Msg, p.To), EncodeMessage(w["msg"].(string), w["to"].(string))) {
			t.Error("encode mismatch")
		}
	}
}

// TestTwisterdTestvector checks the output of twisterd's own `testvector`
// RPC: its hash (printed byte-reversed), its signature and its ECIES.
func TestTwisterdTestvector(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(vectorDir, "ecies_sign_testvector_alice.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		R struct {
			Secret, Pubkey, HashMagic, Plaintext, Hash, Sign string
			Sec                                              struct {
				Key, Mac, Body string
				Orig           int64
			}
		} `json:"rpc_result"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	key, err := ParseWIF(v.R.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(key.PubKey()) != v.R.Pubkey {
		t.Fatal("pubkey")
	}
	h := MessageHash([]byte(v.R.Plaintext))
	if reversedHex(h[:]) != v.R.Hash {
		t.Errorf("hash GetHex %s want %s", reversedHex(h[:]), v.R.Hash)
	}
	if err := VerifySignature([]byte(v.R.Plaintext), mustHex(t, v.R.Sign), key.PubKey()); err != nil {
		t.Errorf("twisterd signature: %v", err)
	}
	env := &Envelope{Key: mustHex(t, v.R.Sec.Key), Mac: mustHex(t, v.R.Sec.Mac), Body: mustHex(t, v.R.Sec.Body), Orig: v.R.Sec.Orig}
	plain, err := env.Decrypt(key)
	if err != nil || string(plain) != v.R.Plaintext {
		t.Fatalf("decrypt: %q %v", plain, err)
	}
}

func reversedHex(b []byte) string {
	r := make([]byte, len(b))
	for i := range b {
		r[i] = b[len(b)-1-i]
	}
	return hex.EncodeToString(r)
}

// TestFixedVector reproduces spec §10 byte for byte.
func TestFixedVector(t *testing.T) {
	rcpt, err := ParseWIF("KynomPNDtXpgUmTGLYaNupehB3LHJ9AqBEoFCC9nf88T1sixKjMw")
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(rcpt.Secret()) != "4cb36448940372f34b302ab63511fc25817a07ee2e1cf6f9c47b0ade701c5e11" {
		t.Fatal("recipient secret")
	}
	unc, err := ParseWIF("5JQ4oJkn4X6NBNQApUYaWe5TmsNb3ygPF6qzbFm8dH7fyRyCJ6D")
	if err != nil || unc.Compressed || !bytes.Equal(unc.Secret(), rcpt.Secret()) {
		t.Fatalf("uncompressed WIF: %v", err)
	}
	eph, err := PrivateKeyFromBytes(mustHex(t, "1f87164dce680cc3a7e1570afee45b33503fcda15eea02815015f1435bf00066"), true)
	if err != nil {
		t.Fatal(err)
	}
	env, err := EncryptWithEphemeral(rcpt.PubKey(), []byte("d3:msg9:hello bob2:to3:bobe"), eph.Key)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"key":  "02b3ea4b31ecbfbe931a2e5e358d410c1d553f5a66cd55f16a14e94829c18346a9",
		"mac":  "b69b97ba61fa45486dfafd87596751d9aacdde02465b3d19306abd131e415bdec752ac8f4f2c7fca1495ca0f38c79d295217fe01c5391fa36b765714dfd7e918",
		"body": "fb1c887d574a54f8dd32801a4f20b389f3a9ffdb6a2a5b4f6c1a147e4f8392f0",
	}
	got := map[string]string{"key": hex.EncodeToString(env.Key), "mac": hex.EncodeToString(env.Mac), "body": hex.EncodeToString(env.Body)}
	if !reflect.DeepEqual(got, want) || env.Orig != 27 {
		t.Fatalf("envelope %v orig %d", got, env.Orig)
	}
	sender, err := ParseWIF("KyWcef59e1jSKnFXQcC6ffMaeXbY6bCUoRTMcQq7s6ydjQ4VpWvU")
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(sender.PubKey()) != "0251a6147bb5cb77325df5721828bb9fdc3b3859b980819b9cf5b39182d2f9d787" {
		t.Fatal("sender pubkey")
	}
	up := BuildDMUserpost("alice", 42, 123456, 1500000000, env)
	wantUP := "64323a646d64343a626f647933323afb1c887d574a54f8dd32801a4f20b389f3a9ffdb6a2a5b4f6c1a147e4f8392f0333a6b657933333a02b3ea4b31ecbfbe931a2e5e358d410c1d553f5a66cd55f16a14e94829c18346a9333a6d616336343ab69b97ba61fa45486dfafd87596751d9aacdde02465b3d19306abd131e415bdec752ac8f4f2c7fca1495ca0f38c79d295217fe01c5391fa36b765714dfd7e918343a6f7269676932376565363a6865696768746931323334353665313a6b69343265333a6d7367303a343a6d736732303a313a6e353a616c696365343a74696d6569313530303030303030306565"
	if hex.EncodeToString(up) != wantUP {
		t.Fatalf("userpost %x", up)
	}
	h := MessageHash(up)
	if hex.EncodeToString(h[:]) != "f478de2c61336c3213d6f588ca722ad34daaa94fa585b32879b3b2123e3bd6e0" {
		t.Fatalf("hash %x", h)
	}
	post, err := BuildDMPost(sender, "alice", 42, 123456, 1500000000, env)
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodePost(post)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(p.Sig) != "20507261bd8b6be33309794827ca321eab84b83143b95700c6213642cbd7c58299207f90a6839dec3fe9a34260df24b38bbd1d7fb03af642965d6985247d58456c" {
		t.Fatalf("signature %x", p.Sig)
	}
	if len(post) != 333 {
		t.Fatalf("post length %d", len(post))
	}
	plain, err := env.Decrypt(rcpt)
	if err != nil || string(plain) != "d3:msg9:hello bob2:to3:bobe" {
		t.Fatalf("decrypt %q %v", plain, err)
	}
	// testvector's magic-only hash, printed reversed by GetHex.
	if hm := sha256d(append([]byte{24}, MessageMagic...)); reversedHex(hm[:]) != "9a3d46c1351cc70a0d89a2c2a4192913cc1bc4fce631b451e56c5239afc8f470" {
		t.Errorf("magic hash %s", reversedHex(hm[:]))
	}
	if !strings.HasPrefix(MessageMagic, "twister") || len(MessageMagic) != 24 {
		t.Fatal("magic")
	}
}
