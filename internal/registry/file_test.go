package registry

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// Keys of the transcript's users (shared/vectors/keys.json).
const (
	alicePubHex = "0289466f49cd83149b97fb61513d87e43ea62cafe646c42e7f53ac84778e41b475"
	bobPubHex   = "03f7f427f2255b00fcdceb20fc50e2320816099cee898de26d967078d2796787e6"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeClock is a settable clock for the file's best height.
type fakeClock struct{ unix atomic.Int64 }

func (c *fakeClock) now() time.Time { return time.Unix(c.unix.Load(), 0) }

func newFile(t *testing.T, genesis int64, interval time.Duration, clock *fakeClock) *File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "registry.txt")
	created, err := InitFile(context.Background(), path, time.Unix(genesis, 0), interval)
	if err != nil || !created {
		t.Fatalf("InitFile = %v, %v", created, err)
	}
	f, err := OpenFile(path, WithClock(clock.now))
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	return f
}

func TestFileRegisterAndLookup(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{}
	clock.unix.Store(1000 + 35) // genesis 1000, 10 s blocks: best height 3
	f := newFile(t, 1000, 10*time.Second, clock)

	if best, err := f.BestHeight(ctx); err != nil || best != 3 {
		t.Fatalf("BestHeight = %d, %v; want 3", best, err)
	}
	alice := mustHex(t, alicePubHex)
	reg, err := f.Register(ctx, "alice", alice)
	if err != nil || reg.Height != 2 {
		t.Fatalf("Register alice = %+v, %v; want height 2 (best-1, where posts are signed)", reg, err)
	}
	if _, err := f.Register(ctx, "alice", mustHex(t, bobPubHex)); !errors.Is(err, ErrAlreadyRegistered) ||
		err.Error() != "Error: this username exists in tx database" {
		t.Fatalf("second Register alice = %v; want twisterd's message", err)
	}
	uk, err := f.UserKey(ctx, "alice", -1)
	if err != nil || !bytes.Equal(uk.PubKey, alice) || uk.RegHeight != 2 {
		t.Fatalf("UserKey(alice, -1) = %x %d, %v", uk.PubKey, uk.RegHeight, err)
	}
	if _, err := f.UserKey(ctx, "alice", 1); !errors.Is(err, twproto.ErrUnknownUser) {
		t.Fatalf("UserKey(alice, 1) before registration = %v; want ErrUnknownUser", err)
	}
	if _, err := f.UserKey(ctx, "carol", -1); !errors.Is(err, twproto.ErrUnknownUser) {
		t.Fatalf("UserKey(carol) = %v; want ErrUnknownUser", err)
	}

	// Blocks advance with the clock, which is what lets k grow on a devnet.
	clock.unix.Store(1000 + 10*50)
	if best, _ := f.BestHeight(ctx); best != 50 {
		t.Fatalf("BestHeight after 500 s = %d; want 50", best)
	}

	// A key replacement: the old key stays valid for heights before it.
	newKey, err := twproto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := f.ReplaceKey(ctx, "alice", newKey.PubKey())
	if err != nil || rep.Height != 50 {
		t.Fatalf("ReplaceKey = %+v, %v", rep, err)
	}
	if uk, _ := f.UserKey(ctx, "alice", 49); !bytes.Equal(uk.PubKey, alice) || uk.RegHeight != 2 {
		t.Fatalf("UserKey(alice, 49) = %x %d; want the old key", uk.PubKey, uk.RegHeight)
	}
	if uk, _ := f.UserKey(ctx, "alice", 50); !bytes.Equal(uk.PubKey, newKey.PubKey()) || uk.RegHeight != 50 {
		t.Fatalf("UserKey(alice, 50) = %x %d; want the new key", uk.PubKey, uk.RegHeight)
	}
	if _, err := f.ReplaceKey(ctx, "nobody", newKey.PubKey()); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("ReplaceKey(nobody) = %v", err)
	}

	// Another opener of the same file (another process, in effect) sees all of it.
	g, err := OpenFile(f.Path(), WithClock(clock.now))
	if err != nil {
		t.Fatal(err)
	}
	regs, err := g.Registrations(ctx)
	if err != nil || len(regs) != 2 || regs[0].User != "alice" || regs[1].Height != 50 {
		t.Fatalf("Registrations = %+v, %v", regs, err)
	}
	// And f sees g's writes without reopening.
	if _, err := g.Register(ctx, "bob", mustHex(t, bobPubHex)); err != nil {
		t.Fatal(err)
	}
	if uk, err := f.UserKey(ctx, "bob", -1); err != nil || uk.RegHeight != 49 {
		t.Fatalf("f.UserKey(bob) after g.Register = %+v, %v", uk, err)
	}
}

func TestFileRejectsBadRegistrations(t *testing.T) {
	ctx := context.Background()
	f := newFile(t, 0, 0, &fakeClock{})
	alice := mustHex(t, alicePubHex)
	for _, name := range []string{"", "Alice", "al ice", "a-b", "seventeen_chars_x", "ünï"} {
		if _, err := f.Register(ctx, name, alice); !errors.Is(err, ErrInvalidUsername) {
			t.Errorf("Register(%q) = %v; want ErrInvalidUsername", name, err)
		}
	}
	bad := [][]byte{nil, alice[:32], append([]byte{5}, alice[1:]...), append([]byte{2}, bytes.Repeat([]byte{0xff}, 32)...)}
	for _, pub := range bad {
		if _, err := f.Register(ctx, "alice", pub); !errors.Is(err, ErrInvalidPubKey) {
			t.Errorf("Register(alice, %x) = %v; want ErrInvalidPubKey", pub, err)
		}
	}
	// A name of 16 characters from the allowed set is fine (twisterd's limit).
	if _, err := f.Register(ctx, "a_1234567890_bcd", alice); err != nil {
		t.Fatalf("Register(16 chars) = %v", err)
	}
	// Interval 0: the best height follows registrations only.
	if best, _ := f.BestHeight(ctx); best != 0 {
		t.Fatalf("BestHeight = %d; want 0", best)
	}
}

func TestExampleFileValidatesTranscriptPost(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{}
	clock.unix.Store(1795483200 + 12*10) // 12 blocks, as in the transcript
	f, err := OpenFile("../../testdata/registry/example.txt", WithClock(clock.now))
	if err != nil {
		t.Fatal(err)
	}
	if best, _ := f.BestHeight(ctx); best != 12 {
		t.Fatalf("BestHeight = %d; want 12", best)
	}
	raw, err := os.ReadFile("../../testdata/vectors/dm_alice_k2.json")
	if err != nil {
		t.Fatal(err)
	}
	var vec struct {
		Post string `json:"post_bencoded_hex"`
	}
	if err := json.Unmarshal(raw, &vec); err != nil {
		t.Fatal(err)
	}
	post := mustHex(t, vec.Post)
	if _, err := twproto.ValidatePost(ctx, post, "alice", 2, f); err != nil {
		t.Fatalf("ValidatePost(alice k=2) with the example registry: %v", err)
	}
	// Bob's key is not alice's: the same post claimed by bob fails.
	if _, err := twproto.ValidatePost(ctx, post, "bob", 2, f); err == nil {
		t.Fatal("ValidatePost accepted alice's post as bob's")
	}
}

func TestInitFileKeepsExisting(t *testing.T) {
	ctx := context.Background()
	f := newFile(t, 500, 10*time.Second, &fakeClock{})
	if _, err := f.Register(ctx, "bob", mustHex(t, bobPubHex)); err != nil {
		t.Fatal(err)
	}
	created, err := InitFile(ctx, f.Path(), time.Unix(999, 0), time.Minute)
	if err != nil || created {
		t.Fatalf("InitFile on an existing file = %v, %v; want kept", created, err)
	}
	if regs, _ := f.Registrations(ctx); len(regs) != 1 {
		t.Fatalf("registrations lost: %+v", regs)
	}
	if err := os.WriteFile(f.Path(), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := InitFile(ctx, f.Path(), time.Unix(999, 0), time.Minute); !errors.Is(err, ErrBadFile) {
		t.Fatalf("InitFile on a corrupt file = %v; want ErrBadFile", err)
	}
	if _, err := f.BestHeight(ctx); !errors.Is(err, ErrBadFile) {
		t.Fatalf("BestHeight on a corrupt file = %v; want ErrBadFile", err)
	}
	if _, err := f.Register(ctx, "carol", mustHex(t, alicePubHex)); !errors.Is(err, ErrBadFile) {
		t.Fatalf("Register on a corrupt file = %v; want ErrBadFile (and the file left alone)", err)
	}
	if _, err := OpenFile(filepath.Join(t.TempDir(), "missing.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenFile(missing) = %v; want ErrNotExist", err)
	}
	if _, err := InitFile(ctx, filepath.Join(t.TempDir(), "r.txt"), time.Unix(0, 0), time.Millisecond); err == nil {
		t.Fatal("InitFile accepted a 1ms interval")
	}
}

func TestParseFileErrors(t *testing.T) {
	head := "twgroupd-registry 1\nchain 0 10\n"
	cases := map[string]string{
		"empty":           "",
		"no magic":        "chain 0 10\n",
		"wrong version":   "twgroupd-registry 2\nchain 0 10\n",
		"no chain":        "twgroupd-registry 1\n",
		"two chains":      head + "chain 0 10\n",
		"chain arity":     "twgroupd-registry 1\nchain 0\n",
		"negative chain":  "twgroupd-registry 1\nchain -1 10\n",
		"unknown record":  head + "block 7\n",
		"user arity":      head + "user alice 1\n",
		"bad name":        head + "user Alice 1 " + alicePubHex + "\n",
		"bad height":      head + "user alice x " + alicePubHex + "\n",
		"negative height": head + "user alice -1 " + alicePubHex + "\n",
		"huge height":     head + "user alice 99999999999 " + alicePubHex + "\n",
		"not hex":         head + "user alice 1 zz\n",
		"short key":       head + "user alice 1 0289\n",
		"off curve":       head + "user alice 1 02" + strings.Repeat("ff", 32) + "\n",
		"height order":    head + "user alice 5 " + alicePubHex + "\nuser alice 5 " + bobPubHex + "\n",
		"long line":       head + "# " + strings.Repeat("x", maxLineLen) + "\n",
	}
	for name, text := range cases {
		if _, err := parseFile([]byte(text)); !errors.Is(err, ErrBadFile) {
			t.Errorf("%s: parseFile = %v; want ErrBadFile", name, err)
		}
	}
	st, err := parseFile([]byte("\r\n# c\r\n twgroupd-registry 1 \r\nchain 0 10\r\nuser alice 1 " + alicePubHex + "\r\nuser alice 7 " + bobPubHex))
	if err != nil || len(st.regs["alice"]) != 2 || st.maxHeight != 7 {
		t.Fatalf("CRLF file without final newline: %+v, %v", st, err)
	}
}

func TestConcurrentRegistrations(t *testing.T) {
	ctx := context.Background()
	f := newFile(t, 0, 0, &fakeClock{})
	pub := mustHex(t, alicePubHex)
	const writers, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		// Half the writers use their own File, like separate node objects.
		reg := f
		if w%2 == 1 {
			var err error
			if reg, err = OpenFile(f.Path()); err != nil {
				t.Fatal(err)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := reg.Register(ctx, fmt.Sprintf("g%d_%d", w, i), pub); err != nil {
					errs <- err
				}
				// Everyone also races to register the same name: one must win.
				if _, err := reg.Register(ctx, fmt.Sprintf("shared%d", i), pub); err != nil && !errors.Is(err, ErrAlreadyRegistered) {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkRegistrations(t, f.Path(), writers*each+each, func(user string) bool { return true })
}

// checkRegistrations re-reads the file from disk and checks it holds want
// registrations, each user once.
func checkRegistrations(t *testing.T, path string, want int, keep func(string) bool) {
	t.Helper()
	g, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	regs, err := g.Registrations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	n := 0
	for _, r := range regs {
		if !keep(r.User) {
			continue
		}
		if seen[r.User] {
			t.Errorf("%s registered twice", r.User)
		}
		seen[r.User] = true
		n++
	}
	if n != want {
		t.Fatalf("file holds %d registrations; want %d", n, want)
	}
}

const childEnv = "TWGROUPD_REGISTRY_CHILD"

// TestRegisterChildProcess is the body of the child processes of
// TestRegistrationsFromTwoProcesses; it does nothing in a normal run.
func TestRegisterChildProcess(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return
	}
	parts := strings.Split(spec, "|")
	path, prefix := parts[0], parts[1]
	n, _ := strconv.Atoi(parts[2])
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pub := mustHex(t, bobPubHex)
	for i := range n {
		if _, err := f.Register(context.Background(), fmt.Sprintf("%s%d", prefix, i), pub); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Register(context.Background(), fmt.Sprintf("both%d", i), pub); err != nil && !errors.Is(err, ErrAlreadyRegistered) {
			t.Fatal(err)
		}
	}
}

func TestRegistrationsFromTwoProcesses(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("in a child")
	}
	f := newFile(t, 0, 0, &fakeClock{})
	const n = 40
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for _, prefix := range []string{"pa", "pb"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRegisterChildProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+f.Path()+"|"+prefix+"|"+strconv.Itoa(n))
		out := new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		outs = append(outs, out)
	}
	// The parent writes at the same time, through the same file.
	pub := mustHex(t, alicePubHex)
	for i := range n {
		if _, err := f.Register(context.Background(), fmt.Sprintf("pp%d", i), pub); err != nil {
			t.Fatal(err)
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, outs[i])
		}
	}
	checkRegistrations(t, f.Path(), 4*n, func(string) bool { return true })
	checkRegistrations(t, f.Path(), n, func(u string) bool { return strings.HasPrefix(u, "both") })
	// No temp files left behind.
	entries, _ := os.ReadDir(filepath.Dir(f.Path()))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("leftover temp file %s", e.Name())
		}
	}
}

func TestRegisterHonoursContextWhileLocked(t *testing.T) {
	f := newFile(t, 0, 0, &fakeClock{})
	unlock, err := lockFile(context.Background(), f.Path()+".lock")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := f.Register(ctx, "alice", mustHex(t, alicePubHex)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Register while another holder has the lock = %v; want deadline exceeded", err)
	}
}

func FuzzParseFile(f *testing.F) {
	if data, err := os.ReadFile("../../testdata/registry/example.txt"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("twgroupd-registry 1\nchain 0 0\n"))
	f.Add([]byte("twgroupd-registry 1\nchain 5 10\nuser a 1 " + alicePubHex + "\nuser a 2 " + bobPubHex + "\n"))
	f.Add([]byte("twgroupd-registry 1\r\nchain 1 1\r\nuser x 0 04"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseFile(data)
		if err != nil {
			if !errors.Is(err, ErrBadFile) {
				t.Fatalf("parseFile error %v is not ErrBadFile", err)
			}
			return
		}
		for user, regs := range st.regs {
			if CheckUsername(user) != nil || len(regs) == 0 {
				t.Fatalf("accepted bad user %q", user)
			}
			for i, r := range regs {
				if checkPubKey(r.PubKey) != nil || (i > 0 && regs[i-1].Height >= r.Height) {
					t.Fatalf("accepted bad registration %+v", r)
				}
			}
		}
	})
}

func TestInitFileRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.txt")
	var wg sync.WaitGroup
	var created atomic.Int32
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := InitFile(context.Background(), path, time.Unix(int64(1000+i), 0), DefaultBlockInterval)
			if err != nil {
				t.Error(err)
			}
			if ok {
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	if created.Load() != 1 {
		t.Fatalf("%d callers created the file; want 1", created.Load())
	}
	clock := &fakeClock{}
	clock.unix.Store(2000)
	f, err := OpenFile(path, WithClock(clock.now))
	if err != nil {
		t.Fatal(err)
	}
	// Whichever genesis won, every opener derives the same height from it.
	best, err := f.BestHeight(context.Background())
	if err != nil || best < (2000-1007)/10 || best > (2000-1000)/10 {
		t.Fatalf("BestHeight = %d, %v", best, err)
	}
}
