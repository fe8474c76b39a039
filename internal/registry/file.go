package registry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// The registry file format (docs/registry.md):
//
//	twgroupd-registry 1
//	chain <genesis unix seconds> <block interval seconds>
//	user <name> <height> <pubkey hex>
//
// plus blank lines and "#" comments. A user with several lines had its key
// replaced; heights of one user strictly increase in file order.
const (
	fileMagic = "twgroupd-registry 1"

	// DefaultBlockInterval is the devnet's pretend block time. Every block
	// lets each user post 2 more pieces (spec §3.3 rule 5), so a short
	// interval keeps a long-running devnet from hitting the k bound.
	DefaultBlockInterval = 10 * time.Second

	// MaxFileSize bounds what is read: ~100 bytes a user, so about 160 000 users.
	MaxFileSize = 16 << 20
	maxLineLen  = 512

	// lockWait bounds how long Register waits for another process's lock.
	lockWait = 30 * time.Second
)

// ErrBadFile wraps every parse error of a registry file.
var ErrBadFile = errors.New("bad registry file")

// fileState is one parsed version of the file.
type fileState struct {
	genesis   int64 // unix seconds
	interval  int64 // seconds; 0: the best height is the highest registration
	regs      map[string][]Registration
	order     []Registration // file order
	maxHeight int64
}

func (s *fileState) add(r Registration) {
	s.regs[r.User] = append(s.regs[r.User], r)
	s.order = append(s.order, r)
	s.maxHeight = max(s.maxHeight, r.Height)
}

// bestHeight is the number of whole block intervals since genesis, and never
// below the highest registration, so a registered user is always in the chain.
func (s *fileState) bestHeight(now time.Time) int64 {
	h := s.maxHeight
	if s.interval > 0 {
		if elapsed := now.Unix() - s.genesis; elapsed > 0 {
			h = max(h, elapsed/s.interval)
		}
	}
	return h
}

// parseFile decodes a registry file. Every problem is an ErrBadFile naming
// the line; nothing in the input can make it panic or allocate more than a
// small multiple of len(data).
func parseFile(data []byte) (*fileState, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadFile, MaxFileSize)
	}
	st := &fileState{regs: make(map[string][]Registration)}
	sawMagic, sawChain := false, false
	lineNo := 0
	for rest := data; len(rest) > 0; {
		var line []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			line, rest = rest, nil
		}
		lineNo++
		if len(line) > maxLineLen {
			return nil, fmt.Errorf("%w: line %d longer than %d bytes", ErrBadFile, lineNo, maxLineLen)
		}
		text := strings.TrimSpace(strings.TrimSuffix(string(line), "\r"))
		if text == "" || text[0] == '#' {
			continue
		}
		if !sawMagic {
			if text != fileMagic {
				return nil, fmt.Errorf("%w: line %d: want %q as the first line", ErrBadFile, lineNo, fileMagic)
			}
			sawMagic = true
			continue
		}
		fields := strings.Fields(text)
		switch fields[0] {
		case "chain":
			if sawChain {
				return nil, fmt.Errorf("%w: line %d: second chain line", ErrBadFile, lineNo)
			}
			if len(fields) != 3 {
				return nil, fmt.Errorf("%w: line %d: want \"chain <genesis unix seconds> <block interval seconds>\"", ErrBadFile, lineNo)
			}
			g, err1 := strconv.ParseInt(fields[1], 10, 64)
			iv, err2 := strconv.ParseInt(fields[2], 10, 64)
			if err1 != nil || err2 != nil || g < 0 || iv < 0 {
				return nil, fmt.Errorf("%w: line %d: genesis and interval must be non-negative integers", ErrBadFile, lineNo)
			}
			st.genesis, st.interval = g, iv
			sawChain = true
		case "user":
			if len(fields) != 4 {
				return nil, fmt.Errorf("%w: line %d: want \"user <name> <height> <pubkey hex>\"", ErrBadFile, lineNo)
			}
			name := fields[1]
			if err := CheckUsername(name); err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrBadFile, lineNo, err)
			}
			h, err := strconv.ParseInt(fields[2], 10, 64)
			if err != nil || h < 0 || h > 1<<31-1 {
				return nil, fmt.Errorf("%w: line %d: height must be an integer in [0, 2^31)", ErrBadFile, lineNo)
			}
			pub, err := hex.DecodeString(fields[3])
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: pubkey is not hex", ErrBadFile, lineNo)
			}
			if err := checkPubKey(pub); err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrBadFile, lineNo, err)
			}
			if prev := st.regs[name]; len(prev) > 0 && prev[len(prev)-1].Height >= h {
				return nil, fmt.Errorf("%w: line %d: key replacement of %q must be at a height above %d", ErrBadFile, lineNo, name, prev[len(prev)-1].Height)
			}
			st.add(Registration{User: name, PubKey: pub, Height: h})
		default:
			return nil, fmt.Errorf("%w: line %d: unknown record %q", ErrBadFile, lineNo, fields[0])
		}
	}
	if !sawMagic || !sawChain {
		return nil, fmt.Errorf("%w: missing the %q and chain lines", ErrBadFile, fileMagic)
	}
	return st, nil
}

func formatHeader(genesis time.Time, interval time.Duration) string {
	return fmt.Sprintf("%s\n"+
		"# twgroupd local user registry (docs/registry.md). Public keys only.\n"+
		"# chain <genesis unix seconds> <block interval seconds>: best height = (now-genesis)/interval\n"+
		"chain %d %d\n"+
		"# user <name> <registration height> <public key hex>\n",
		fileMagic, genesis.Unix(), int64(interval/time.Second))
}

func formatUser(r Registration) string {
	return fmt.Sprintf("user %s %d %x\n", r.User, r.Height, r.PubKey)
}

// File is the registry file of a devnet or a test network. Several processes
// may share one file: readers see whole versions (writers replace the file by
// rename), writers take an flock on "<path>.lock". Safe for concurrent use.
type File struct {
	path string
	now  func() time.Time

	writeMu sync.Mutex // orders this process's writers before the flock

	mu    sync.Mutex
	state *fileState
	info  os.FileInfo // of the version in state
}

// FileOption configures a File.
type FileOption func(*File)

// WithClock replaces time.Now, which drives the best height.
func WithClock(now func() time.Time) FileOption {
	return func(f *File) {
		if now != nil {
			f.now = now
		}
	}
}

// InitFile creates a registry file at path, unless one exists (then it is
// checked and kept, created is false). genesis is block 0's time; interval
// (whole seconds, 0 for a best height that only moves with registrations) is
// the pretend block time.
func InitFile(ctx context.Context, path string, genesis time.Time, interval time.Duration) (created bool, err error) {
	if interval < 0 || (interval > 0 && interval < time.Second) || genesis.Unix() < 0 {
		return false, fmt.Errorf("init registry file %s: interval must be 0 or at least 1s, genesis after 1970", path)
	}
	unlock, err := lockFile(ctx, path+".lock")
	if err != nil {
		return false, fmt.Errorf("init registry file: %w", err)
	}
	defer unlock()
	if data, _, err := readFile(path); err == nil {
		if _, err := parseFile(data); err != nil {
			return false, fmt.Errorf("registry file %s exists: %w", path, err)
		}
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("init registry file: %w", err)
	}
	if err := writeAtomic(path, []byte(formatHeader(genesis, interval))); err != nil {
		return false, fmt.Errorf("init registry file: %w", err)
	}
	return true, nil
}

// OpenFile opens an existing registry file (see InitFile) and checks it.
func OpenFile(path string, opts ...FileOption) (*File, error) {
	f := &File{path: path, now: time.Now}
	for _, o := range opts {
		o(f)
	}
	if _, err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// UserKey implements twproto.KeySource.
func (f *File) UserKey(ctx context.Context, user string, height int64) (twproto.UserKey, error) {
	st, err := f.load()
	if err != nil {
		return twproto.UserKey{}, err
	}
	uk, ok := keyAt(st.regs[user], height)
	if !ok {
		return twproto.UserKey{}, ErrUnknownUser
	}
	return uk, nil
}

// BestHeight implements twproto.KeySource.
func (f *File) BestHeight(ctx context.Context) (int64, error) {
	st, err := f.load()
	if err != nil {
		return 0, err
	}
	return st.bestHeight(f.now()), nil
}

// Registrations lists every registration in file order.
func (f *File) Registrations(ctx context.Context) ([]Registration, error) {
	st, err := f.load()
	if err != nil {
		return nil, err
	}
	return append([]Registration(nil), st.order...), nil
}

// Register records user with pubkey in the block before the current best
// one, so the user can post at once: posts are signed at best-1 (twisterd's
// "be conservative"), and a key registered at best would not yet be in
// force there. This is sendnewusertransaction on a devnet node. A user
// already in the file gives ErrAlreadyRegistered, as in twisterd.
func (f *File) Register(ctx context.Context, user string, pubkey []byte) (Registration, error) {
	return f.update(ctx, user, pubkey, func(st *fileState, best int64) (int64, error) {
		if len(st.regs[user]) > 0 {
			return 0, ErrAlreadyRegistered
		}
		return max(best-1, 0), nil
	})
}

// ReplaceKey records a key replacement for a registered user, in force from
// the current best height (or the block after the user's last change).
func (f *File) ReplaceKey(ctx context.Context, user string, pubkey []byte) (Registration, error) {
	return f.update(ctx, user, pubkey, func(st *fileState, best int64) (int64, error) {
		prev := st.regs[user]
		if len(prev) == 0 {
			return 0, ErrUnknownUser
		}
		return max(best, prev[len(prev)-1].Height+1), nil
	})
}

func (f *File) update(ctx context.Context, user string, pubkey []byte, height func(*fileState, int64) (int64, error)) (Registration, error) {
	if err := CheckUsername(user); err != nil {
		return Registration{}, err
	}
	if err := checkPubKey(pubkey); err != nil {
		return Registration{}, err
	}
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	unlock, err := lockFile(ctx, f.path+".lock")
	if err != nil {
		return Registration{}, fmt.Errorf("register %s: %w", user, err)
	}
	defer unlock()
	// Re-read under the lock: another process may have written since.
	data, _, err := readFile(f.path)
	if err != nil {
		return Registration{}, fmt.Errorf("register %s: %w", user, err)
	}
	st, err := parseFile(data)
	if err != nil {
		return Registration{}, fmt.Errorf("register %s: registry file %s: %w", user, f.path, err)
	}
	h, err := height(st, st.bestHeight(f.now()))
	if err != nil {
		return Registration{}, err
	}
	reg := Registration{User: user, PubKey: bytes.Clone(pubkey), Height: h}
	line := formatUser(reg)
	if len(data)+len(line)+1 > MaxFileSize {
		return Registration{}, fmt.Errorf("register %s: registry file %s is full (%d bytes)", user, f.path, MaxFileSize)
	}
	out := make([]byte, 0, len(data)+len(line)+1)
	out = append(out, data...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	out = append(out, line...)
	if err := writeAtomic(f.path, out); err != nil {
		return Registration{}, fmt.Errorf("register %s: %w", user, err)
	}
	st.add(reg)
	if fi, err := os.Stat(f.path); err == nil {
		f.mu.Lock()
		f.state, f.info = st, fi
		f.mu.Unlock()
	}
	return reg, nil
}

// load returns the parsed current version, re-reading only when the file
// was replaced (a writer's rename gives a new inode) or changed.
func (f *File) load() (*fileState, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		return nil, fmt.Errorf("registry file: %w", err)
	}
	f.mu.Lock()
	if f.state != nil && sameVersion(f.info, fi) {
		st := f.state
		f.mu.Unlock()
		return st, nil
	}
	f.mu.Unlock()
	data, rfi, err := readFile(f.path)
	if err != nil {
		return nil, fmt.Errorf("registry file: %w", err)
	}
	st, err := parseFile(data)
	if err != nil {
		return nil, fmt.Errorf("registry file %s: %w", f.path, err)
	}
	f.mu.Lock()
	f.state, f.info = st, rfi
	f.mu.Unlock()
	return st, nil
}

func sameVersion(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// readFile reads path through one descriptor, so the FileInfo describes
// exactly the bytes returned.
func readFile(path string) ([]byte, os.FileInfo, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		return nil, nil, err
	}
	data, err := io.ReadAll(bufio.NewReader(io.LimitReader(fd, MaxFileSize+1)))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrBadFile, path, MaxFileSize)
	}
	return data, fi, nil
}

// writeAtomic replaces path with data: temp file, fsync, rename, fsync dir.
// Readers see the old or the new version, never a mix.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
