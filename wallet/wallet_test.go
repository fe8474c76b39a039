package wallet

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// Keys from testdata/vectors/keys.json.
const (
	aliceWIF = "L5k7ajAiJxiSm8CEHGJf5jALJXyWZmsiQ9Ngy1KJ5jZkWNup8bUK"
	groupWIF = "KzTAkjGZu9xbVgeFyuWkcR4A3X7U8cvigCsBYdKoZrx6p4Mxc8m8"
)

func openTemp(t *testing.T) (*Wallet, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "wallet.db")
	w, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, path
}

func mustWIF(t *testing.T, s string) *twproto.PrivateKey {
	t.Helper()
	k, err := twproto.ParseWIF(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestUsersAndGroups(t *testing.T) {
	w, path := openTemp(t)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("wallet mode %v, want 0600", st.Mode().Perm())
	}

	bobKey, err := w.CreateUser("bob")
	if err != nil {
		t.Fatal(err)
	}
	if !bobKey.Compressed {
		t.Error("new user key not compressed")
	}
	if _, err := w.CreateUser("bob"); !errors.Is(err, ErrUserExists) {
		t.Fatalf("second CreateUser: %v, want ErrUserExists", err)
	}
	if _, err := w.CreateUser("*nope"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("CreateUser(*nope): %v", err)
	}
	alice := mustWIF(t, aliceWIF)
	if err := w.ImportUserKey("alice", alice); err != nil {
		t.Fatal(err)
	}
	if err := w.ImportUserKey("alice", alice); err != nil {
		t.Fatalf("re-import of the same key: %v", err)
	}
	if err := w.ImportUserKey("alice", bobKey); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("import of another user's key: %v", err)
	}
	got, err := w.Key("alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.WIF() != aliceWIF {
		t.Fatalf("dump alice = %s", got.WIF())
	}
	if _, err := w.Key("carol"); !errors.Is(err, ErrUserNotFound) || err.Error() == "" {
		t.Fatalf("Key(carol): %v", err)
	}

	group := mustWIF(t, groupWIF)
	alias, created, err := w.AddGroupKey(group)
	if err != nil || !created {
		t.Fatalf("AddGroupKey: %q %v %v", alias, created, err)
	}
	if !regexp.MustCompile(`^\*[a-z]{8}$`).MatchString(alias) {
		t.Fatalf("alias %q has the wrong shape", alias)
	}
	again, created, err := w.AddGroupKey(mustWIF(t, groupWIF))
	if err != nil || created || again != alias {
		t.Fatalf("AddGroupKey again: %q %v %v", again, created, err)
	}
	if _, _, err := w.AddGroupKey(alice); !errors.Is(err, ErrNotGroupKey) {
		t.Fatalf("AddGroupKey(user key): %v", err)
	}
	if a, ok, err := w.AliasForKey(group); err != nil || !ok || a != alias {
		t.Fatalf("AliasForKey: %q %v %v", a, ok, err)
	}
	if _, ok, _ := w.AliasForKey(alice); ok {
		t.Fatal("AliasForKey(user key) found an alias")
	}
	if k, err := w.Key(alias); err != nil || k.WIF() != groupWIF {
		t.Fatalf("Key(alias): %v", err)
	}

	users, _ := w.Users()
	if !slices.Equal(users, []string{"alice", "bob"}) {
		t.Fatalf("Users = %v", users)
	}
	aliases, _ := w.GroupAliases()
	if !slices.Equal(aliases, []string{alias}) {
		t.Fatalf("GroupAliases = %v", aliases)
	}

	// Everything survives a reopen.
	gen := w.Generation()
	if gen == 0 {
		t.Fatal("Generation did not move on writes")
	}
	w.Close()
	w2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	all, err := w2.AllKeys()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, nk := range all {
		names = append(names, nk.Name)
		if nk.Name == "bob" && nk.Key.WIF() != bobKey.WIF() {
			t.Error("bob's key changed across reopen")
		}
	}
	if !slices.Equal(names, []string{alias, "alice", "bob"}) {
		t.Fatalf("AllKeys names = %v", names)
	}
}

func TestUncompressedKeyRoundTrip(t *testing.T) {
	w, _ := openTemp(t)
	k := mustWIF(t, "5JQ4oJkn4X6NBNQApUYaWe5TmsNb3ygPF6qzbFm8dH7fyRyCJ6D")
	if err := w.ImportUserKey("old", k); err != nil {
		t.Fatal(err)
	}
	got, err := w.Key("old")
	if err != nil {
		t.Fatal(err)
	}
	if got.Compressed || got.WIF() != k.WIF() {
		t.Fatalf("uncompressed key came back as %v", got.Compressed)
	}
}

func TestKeyNotKnownText(t *testing.T) {
	err := KeyNotKnown("alice")
	if !errors.Is(err, ErrKeyNotKnown) || err.Error() != "Private key for username alice is not known" {
		t.Fatalf("%v", err)
	}
}

// TestSecondProcessFailsFast runs this test binary again as a child that
// opens the same wallet while the parent holds it.
func TestSecondProcessFailsFast(t *testing.T) {
	if path := os.Getenv("TWGROUPD_WALLET_CHILD"); path != "" {
		_, err := Open(path, &Options{OpenTimeout: 200 * time.Millisecond})
		if err == nil {
			os.Exit(3)
		}
		os.Stderr.WriteString(err.Error())
		if errors.Is(err, ErrLocked) {
			os.Exit(7)
		}
		os.Exit(4)
	}
	_, path := openTemp(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestSecondProcessFailsFast$")
	cmd.Env = append(os.Environ(), "TWGROUPD_WALLET_CHILD="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Fatalf("child: %v, stderr %q", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "in use by another process") {
		t.Fatalf("unclear error: %q", stderr.String())
	}
	t.Logf("second open failed after %v: %s", time.Since(start), stderr.String())
}

func FuzzDecodeRecord(f *testing.F) {
	k, _ := twproto.ParseWIF(aliceWIF)
	rec := []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 1}
	f.Add(append(rec, k.Secret()...))
	f.Add([]byte{1, 0})
	f.Add(make([]byte, recordLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		key, _, err := decodeRecord(b)
		if err == nil && (key == nil || len(key.Secret()) != 32) {
			t.Fatalf("accepted record without a key")
		}
	})
}
