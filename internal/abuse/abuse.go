// Package abuse holds bounded attack drivers against a twgroupd node, for
// the limits of issue #11 (docs/dht.md and docs/swarm.md "Limits"): each
// driver sends a bounded amount of hostile traffic to 127.0.0.0/8 only,
// stops by itself (count, time, context) and returns figures: the
// victim's RSS peak, what the victim did for the attacker, and whether
// legitimate peers were still served.
//
// The network drivers are here (PortFlood, HalfOpenFlood, DHTFlood), the
// member-list attack in members.go (MemberList); the
// RPC drivers and the `abuse` command live in their own files.
package abuse

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"
)

// Bounds every driver enforces whatever it is asked.
const (
	maxDuration = 5 * time.Minute
	maxCount    = 2_000_000
)

// ErrNotLoopback: drivers only send to (and from) 127.0.0.0/8.
var ErrNotLoopback = errors.New("abuse: only 127.0.0.0/8 addresses are allowed")

var loopback = netip.MustParsePrefix("127.0.0.0/8")

// CheckLoopback returns ErrNotLoopback unless every address is in
// 127.0.0.0/8.
func CheckLoopback(addrs ...netip.Addr) error {
	for _, a := range addrs {
		if !loopback.Contains(a.Unmap()) {
			return fmt.Errorf("%w: %s", ErrNotLoopback, a)
		}
	}
	return nil
}

// bound clamps d to (0, maxDuration], def when unset.
func bound(d, def time.Duration) time.Duration {
	if d <= 0 {
		d = def
	}
	return min(d, maxDuration)
}

func clampCount(n, def int) int {
	if n <= 0 {
		n = def
	}
	return min(n, maxCount)
}

// ReadRSS returns the resident set size and its high-water mark in KiB
// of pid (0: this process) from /proc/<pid>/status.
func ReadRSS(pid int) (rssKB, hwmKB int64, err error) {
	path := "/proc/self/status"
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("abuse: read rss: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(string(f[1]), 10, 64)
		switch string(f[0]) {
		case "VmRSS:":
			rssKB = v
		case "VmHWM:":
			hwmKB = v
		}
	}
	return rssKB, hwmKB, nil
}

// RSSSampler polls a process's RSS and keeps the peak.
type RSSSampler struct {
	pid    int
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	start  int64
	peak   int64
	sample int
}

// StartRSS samples pid (0: this process) every 20 ms until Stop.
func StartRSS(pid int) *RSSSampler {
	s := &RSSSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	s.start, _, _ = ReadRSS(pid)
	s.peak = s.start
	go func() {
		defer close(s.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.take()
			}
		}
	}()
	return s
}

func (s *RSSSampler) take() {
	rss, _, err := ReadRSS(s.pid)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.peak = max(s.peak, rss)
	s.sample++
	s.mu.Unlock()
}

// Stop ends sampling and returns the RSS at start and the peak, in KiB.
func (s *RSSSampler) Stop() (startKB, peakKB int64) {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.take()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.start, s.peak
}

// withBound returns ctx limited to d.
func withBound(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}
