package chainsync

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// maxBookSize bounds the address book (addr messages cannot grow it past).
const maxBookSize = 2000

// addrEntry is one known P2P address.
type addrEntry struct {
	Addr        string    `json:"addr"`
	LastSeen    time.Time `json:"last_seen,omitzero"`
	LastTry     time.Time `json:"last_try,omitzero"`
	Failures    int       `json:"failures,omitempty"`
	BannedUntil time.Time `json:"banned_until,omitzero"`
}

// addrBook is the address book, saved as peers.json in the datadir
// (twisterd keeps peers.dat); it also holds the bans.
type addrBook struct {
	path string
	now  func() time.Time

	mu      sync.Mutex
	entries map[netip.AddrPort]*addrEntry
	dirty   bool
}

func newAddrBook(path string, now func() time.Time) *addrBook {
	return &addrBook{path: path, now: now, entries: make(map[netip.AddrPort]*addrEntry)}
}

func (b *addrBook) load() error {
	if b.path == "" {
		return nil
	}
	raw, err := os.ReadFile(b.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("address book: %w", err)
	}
	var list []addrEntry
	if err := json.Unmarshal(raw, &list); err != nil {
		return fmt.Errorf("address book %s: %w", b.path, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range list {
		ap, err := netip.ParseAddrPort(list[i].Addr)
		if err != nil || len(b.entries) >= maxBookSize {
			continue
		}
		e := list[i]
		b.entries[ap] = &e
	}
	return nil
}

// save writes the book atomically (temp file + rename).
func (b *addrBook) save() error {
	if b.path == "" {
		return nil
	}
	b.mu.Lock()
	if !b.dirty {
		b.mu.Unlock()
		return nil
	}
	list := make([]addrEntry, 0, len(b.entries))
	for _, e := range b.entries {
		list = append(list, *e)
	}
	b.dirty = false
	b.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Addr < list[j].Addr })
	raw, err := json.MarshalIndent(list, "", " ")
	if err != nil {
		return err
	}
	tmp := b.path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("address book: %w", err)
	}
	if err := os.Rename(tmp, b.path); err != nil {
		return fmt.Errorf("address book: %w", err)
	}
	return nil
}

// add records an address (from addr, a seed or the command line).
func (b *addrBook) add(ap netip.AddrPort, seen time.Time) {
	if !ap.IsValid() || ap.Port() == 0 || ap.Addr().IsUnspecified() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[ap]
	if e == nil {
		if len(b.entries) >= maxBookSize {
			return
		}
		e = &addrEntry{Addr: ap.String()}
		b.entries[ap] = e
	}
	if seen.After(e.LastSeen) {
		e.LastSeen = seen
	}
	b.dirty = true
}

func (b *addrBook) attempt(ap netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.entries[ap]; e != nil {
		e.LastTry = b.now()
		b.dirty = true
	}
}

func (b *addrBook) result(ap netip.AddrPort, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[ap]
	if e == nil {
		return
	}
	if ok {
		e.Failures = 0
		e.LastSeen = b.now()
	} else {
		e.Failures++
	}
	b.dirty = true
}

func (b *addrBook) ban(ap netip.AddrPort, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[ap]
	if e == nil {
		if len(b.entries) >= maxBookSize {
			return
		}
		e = &addrEntry{Addr: ap.String()}
		b.entries[ap] = e
	}
	e.BannedUntil = b.now().Add(d)
	b.dirty = true
}

func (b *addrBook) banned(ap netip.AddrPort) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[ap]
	return e != nil && b.now().Before(e.BannedUntil)
}

// candidates lists addresses worth a try now, best first: not banned, not
// in skip, not tried within their backoff (retry << failures, at most
// retry << maxShift).
func (b *addrBook) candidates(skip func(netip.AddrPort) bool, retry time.Duration, maxShift, n int) []netip.AddrPort {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	var out []netip.AddrPort
	for ap, e := range b.entries {
		if now.Before(e.BannedUntil) || skip(ap) {
			continue
		}
		wait := retry << min(e.Failures, maxShift)
		if !e.LastTry.IsZero() && now.Sub(e.LastTry) < wait {
			continue
		}
		out = append(out, ap)
	}
	sort.Slice(out, func(i, j int) bool {
		ei, ej := b.entries[out[i]], b.entries[out[j]]
		if ei.Failures != ej.Failures {
			return ei.Failures < ej.Failures
		}
		return ei.LastSeen.After(ej.LastSeen)
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// known lists every address not banned (for the DHT bootstrap).
func (b *addrBook) known() []netip.AddrPort {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	var out []netip.AddrPort
	for ap, e := range b.entries {
		if !now.Before(e.BannedUntil) {
			out = append(out, ap)
		}
	}
	return out
}

func bookPath(dataDir string) string {
	if dataDir == "" {
		return ""
	}
	return filepath.Join(dataDir, "peers.json")
}
