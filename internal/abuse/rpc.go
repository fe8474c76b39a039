package abuse

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The RPC drivers: hostile clients of the JSON-RPC port (rpc/limits.go,
// docs/rpc.md "Limits"). Each runs a legitimate caller beside the attack
// and reports its latency (p99) and how many of its calls succeeded.

// RPCTarget is the victim's JSON-RPC endpoint and correct credentials.
type RPCTarget struct {
	Addr      netip.AddrPort // 127.0.0.0/8 only
	User      string
	Password  string
	VictimPID int // whose RSS is sampled; 0: this process
}

func (t RPCTarget) url() string { return "http://" + t.Addr.String() + "/" }

func (t RPCTarget) check() error { return CheckLoopback(t.Addr.Addr()) }

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// Latency summarizes the legitimate caller's calls during an attack.
type Latency struct {
	Calls, OK int
	P50, P99  time.Duration
	Max       time.Duration
}

func (l Latency) String() string {
	return fmt.Sprintf("legit %d/%d ok, p50 %v p99 %v max %v", l.OK, l.Calls,
		l.P50.Round(time.Millisecond), l.P99.Round(time.Millisecond), l.Max.Round(time.Millisecond))
}

// legitBody is the legitimate caller's request: cheap, and answered by
// every twgroupd whatever backends it runs.
const legitBody = `{"method":"help","params":["getinfo"],"id":1}`

// LegitCaller calls help with the right password every interval until
// Stop, which returns the calls' latency; each call may take up to callTimeout (then it counts as failed
// with that latency).
type LegitCaller struct {
	mu   sync.Mutex
	lat  []time.Duration
	ok   int
	stop chan struct{}
	done chan struct{}
}

const callTimeout = 10 * time.Second

func StartLegit(ctx context.Context, t RPCTarget, interval time.Duration) *LegitCaller {
	lc := &LegitCaller{stop: make(chan struct{}), done: make(chan struct{})}
	hc := &http.Client{Timeout: callTimeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	body := []byte(legitBody)
	// Calls are not cut when the attack's time is up (that would count as a
	// refusal); Stop ends the loop, each call is bounded by callTimeout.
	ctx = context.WithoutCancel(ctx)
	go func() {
		defer close(lc.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			start := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.url(), bytes.NewReader(body))
			req.Header.Set("Authorization", basicAuth(t.User, t.Password))
			resp, err := hc.Do(req)
			ok := false
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok = resp.StatusCode == http.StatusOK
			}
			lc.mu.Lock()
			lc.lat = append(lc.lat, time.Since(start))
			if ok {
				lc.ok++
			}
			lc.mu.Unlock()
			select {
			case <-lc.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return lc
}

func (lc *LegitCaller) Stop() Latency {
	select {
	case <-lc.stop:
	default:
		close(lc.stop)
	}
	<-lc.done
	lc.mu.Lock()
	defer lc.mu.Unlock()
	l := Latency{Calls: len(lc.lat), OK: lc.ok}
	if len(lc.lat) == 0 {
		return l
	}
	s := slices.Clone(lc.lat)
	slices.Sort(s)
	l.P50 = s[len(s)/2]
	l.P99 = s[min(len(s)-1, len(s)*99/100)]
	l.Max = s[len(s)-1]
	return l
}

// SlowBodyConfig: authenticated clients announce a body and trickle it.
type SlowBodyConfig struct {
	Target   RPCTarget
	Clients  int           // trickling connections held (default 24)
	BodySize int           // announced Content-Length (default 1,000)
	Every    time.Duration // one byte per Every (default 100 ms)
	Duration time.Duration // the attack (default 15 s)
}

// SlowBodyResult: the legitimate caller's view while clients trickled.
type SlowBodyResult struct {
	Clients               int
	Reconnects            int64 // trickling connections the victim closed (body timeout) and that were reopened
	Legit                 Latency
	RSSStartKB, RSSPeakKB int64
}

func (r SlowBodyResult) String() string {
	return fmt.Sprintf("slow bodies: %d clients (%d cut and reopened), %v, RSS %d -> peak %d KiB",
		r.Clients, r.Reconnects, r.Legit, r.RSSStartKB, r.RSSPeakKB)
}

// SlowBody runs the trickling-body attack.
func SlowBody(ctx context.Context, cfg SlowBodyConfig) (SlowBodyResult, error) {
	res := SlowBodyResult{Clients: min(clampCount(cfg.Clients, 24), 4096)}
	if err := cfg.Target.check(); err != nil {
		return res, err
	}
	size := cfg.BodySize
	if size <= 0 {
		size = 1000
	}
	every := cfg.Every
	if every <= 0 {
		every = 100 * time.Millisecond
	}
	ctx, cancel := withBound(ctx, bound(cfg.Duration, 15*time.Second))
	defer cancel()
	rss := StartRSS(cfg.Target.VictimPID)
	head := fmt.Sprintf("POST / HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		cfg.Target.Addr, basicAuth(cfg.Target.User, cfg.Target.Password), size)
	var wg sync.WaitGroup
	var reconnects atomic.Int64
	for i := 0; i < res.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := true; ctx.Err() == nil; first = false {
				if !first {
					reconnects.Add(1)
				}
				trickle(ctx, cfg.Target.Addr, head, size, every)
			}
		}()
	}
	// Let the tricklers take their connections before measuring.
	sleepCtx(ctx, 500*time.Millisecond)
	legit := StartLegit(ctx, cfg.Target, 200*time.Millisecond)
	<-ctx.Done()
	res.Legit = legit.Stop()
	wg.Wait()
	res.Reconnects = reconnects.Load()
	res.RSSStartKB, res.RSSPeakKB = rss.Stop()
	return res, nil
}

// trickle sends head, then the body one byte per every, never finishing it
// before ctx ends.
func trickle(ctx context.Context, addr netip.AddrPort, head string, size int, every time.Duration) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		sleepCtx(ctx, every)
		return
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := io.WriteString(c, head+"{"); err != nil {
		return
	}
	closed := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, c); close(closed) }()
	for sent := 1; sent < size-1; sent++ {
		select {
		case <-ctx.Done():
			return
		case <-closed:
			return
		case <-time.After(every):
		}
		if _, err := c.Write([]byte{' '}); err != nil {
			return
		}
	}
	<-closed
}

// WrongPasswordConfig: workers guess passwords in parallel.
type WrongPasswordConfig struct {
	Target   RPCTarget
	Parallel int           // concurrent guessers (default 40)
	Duration time.Duration // guessing time (default 10 s)
}

// WrongPasswordResult: how many guesses the victim answered per second.
type WrongPasswordResult struct {
	Parallel              int
	Sent                  int64 // guesses sent
	Answered              int64 // 401s received within Duration
	Elapsed               time.Duration
	Legit                 Latency
	RSSStartKB, RSSPeakKB int64
}

// Rate is answered wrong guesses per second.
func (r WrongPasswordResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Answered) / r.Elapsed.Seconds()
}

func (r WrongPasswordResult) String() string {
	return fmt.Sprintf("wrong passwords: %d in parallel, %d sent, %d answered in %v (%.1f guesses/s), %v, RSS %d -> peak %d KiB",
		r.Parallel, r.Sent, r.Answered, r.Elapsed.Round(time.Millisecond), r.Rate(), r.Legit, r.RSSStartKB, r.RSSPeakKB)
}

// WrongPasswords runs the parallel guessing attack. Guesses still waiting
// for their answer when Duration ends are abandoned (their connections
// closed), and not counted.
func WrongPasswords(ctx context.Context, cfg WrongPasswordConfig) (WrongPasswordResult, error) {
	res := WrongPasswordResult{Parallel: min(clampCount(cfg.Parallel, 40), 4096)}
	if err := cfg.Target.check(); err != nil {
		return res, err
	}
	ctx, cancel := withBound(ctx, bound(cfg.Duration, 10*time.Second))
	defer cancel()
	rss := StartRSS(cfg.Target.VictimPID)
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, MaxConnsPerHost: 0}}
	body := []byte(legitBody)
	var sent, answered atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < res.Parallel; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Target.url(), bytes.NewReader(body))
				req.Header.Set("Authorization", basicAuth(cfg.Target.User, fmt.Sprintf("guess-%d-%d", i, n)))
				sent.Add(1)
				resp, err := hc.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusUnauthorized && ctx.Err() == nil {
					answered.Add(1)
				}
			}
		}()
	}
	sleepCtx(ctx, 300*time.Millisecond)
	legit := StartLegit(ctx, cfg.Target, 200*time.Millisecond)
	<-ctx.Done()
	res.Elapsed = time.Since(start)
	res.Legit = legit.Stop()
	wg.Wait()
	res.Sent, res.Answered = sent.Load(), answered.Load()
	res.RSSStartKB, res.RSSPeakKB = rss.Stop()
	return res, nil
}

// CrossOriginResult: what a hostile page's requests got, with the
// browser's cached basic auth.
type CrossOriginResult struct {
	OtherOrigin int // status of a text/plain POST with Origin: http://evil.example
	NullOrigin  int // Origin: null (sandboxed frame)
	Rebound     int // Host: evil.example:<port> (DNS rebinding)
	SameOrigin  int // Origin: the server's own (twister-html)
}

func (r CrossOriginResult) String() string {
	return fmt.Sprintf("cross-origin: other origin %d, null origin %d, rebound Host %d, own origin %d",
		r.OtherOrigin, r.NullOrigin, r.Rebound, r.SameOrigin)
}

// CrossOrigin sends what a page on another origin can make a browser send.
func CrossOrigin(ctx context.Context, t RPCTarget) (CrossOriginResult, error) {
	var res CrossOriginResult
	if err := t.check(); err != nil {
		return res, err
	}
	ctx, cancel := withBound(ctx, 30*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	send := func(origin, host string) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.url(), strings.NewReader(legitBody))
		req.Header.Set("Authorization", basicAuth(t.User, t.Password))
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, fmt.Errorf("abuse: cross-origin post: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	var err error
	if res.OtherOrigin, err = send("http://evil.example", ""); err != nil {
		return res, err
	}
	if res.NullOrigin, err = send("null", ""); err != nil {
		return res, err
	}
	rebound := net.JoinHostPort("evil.example", fmt.Sprint(t.Addr.Port()))
	if res.Rebound, err = send("http://"+rebound, rebound); err != nil {
		return res, err
	}
	own := url.URL{Scheme: "http", Host: t.Addr.String()}
	if res.SameOrigin, err = send(own.String(), ""); err != nil {
		return res, err
	}
	return res, nil
}

// HugeBatchConfig: one batch of many elements.
type HugeBatchConfig struct {
	Target   RPCTarget
	Elements int // default 50,000
}

// HugeBatchResult: the victim's answer and memory.
type HugeBatchResult struct {
	Elements              int
	BodyBytes             int
	Status                int
	ReplyBytes            int64
	Reply                 string // its first 200 bytes
	Took                  time.Duration
	RSSStartKB, RSSPeakKB int64
}

func (r HugeBatchResult) String() string {
	return fmt.Sprintf("huge batch: %d elements (%d KiB), HTTP %d, %d reply bytes in %v, RSS %d -> peak %d KiB",
		r.Elements, r.BodyBytes>>10, r.Status, r.ReplyBytes, r.Took.Round(time.Millisecond), r.RSSStartKB, r.RSSPeakKB)
}

// HugeBatch sends one batch of Elements help calls.
func HugeBatch(ctx context.Context, cfg HugeBatchConfig) (HugeBatchResult, error) {
	res := HugeBatchResult{Elements: clampCount(cfg.Elements, 50_000)}
	if err := cfg.Target.check(); err != nil {
		return res, err
	}
	ctx, cancel := withBound(ctx, 2*time.Minute)
	defer cancel()
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; i < res.Elements; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"method":"help","params":["getinfo"],"id":%d}`, i)
	}
	b.WriteByte(']')
	res.BodyBytes = b.Len()
	rss := StartRSS(cfg.Target.VictimPID)
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Target.url(), &b)
	req.Header.Set("Authorization", basicAuth(cfg.Target.User, cfg.Target.Password))
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		rss.Stop()
		return res, fmt.Errorf("abuse: batch: %w", err)
	}
	head := make([]byte, 200)
	n, _ := io.ReadFull(resp.Body, head)
	rest, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	res.Took = time.Since(start)
	res.Status, res.Reply, res.ReplyBytes = resp.StatusCode, string(head[:n]), int64(n)+rest
	time.Sleep(200 * time.Millisecond) // let the sampler see the peak
	res.RSSStartKB, res.RSSPeakKB = rss.Stop()
	return res, nil
}
