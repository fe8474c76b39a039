package rpc

import (
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits against hostile clients and web pages (issue #11, docs/rpc.md
// "Limits"). Each has a Config field; zero means the default here.
const (
	// DefaultMaxConns bounds open connections; at the bound Accept waits,
	// so the kernel's backlog holds newcomers until a slot frees.
	DefaultMaxConns = 128
	// DefaultBodyTimeout bounds reading one request body, which happens
	// before an execution slot is taken.
	DefaultBodyTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds each write of a reply (a client that stops
	// reading loses its connection, not a slot forever).
	DefaultWriteTimeout = 30 * time.Second
	// DefaultMaxBatch bounds the elements of one batch request.
	DefaultMaxBatch = 1000
	// DefaultAuthFailInterval spaces the answers to wrong credentials,
	// across all connections: at most 4 wrong guesses answered per second.
	DefaultAuthFailInterval = 250 * time.Millisecond
	// maxAuthWaiters bounds the wrong-credential requests waiting for their
	// turn outside the connection bound (each is one socket and one
	// goroutine); past it they wait inside the bound.
	maxAuthWaiters = 1024
	// authLogEvery is the least time between two "incorrect password" logs.
	authLogEvery = 10 * time.Second
)

// limitListener caps the connections open at once; the listeners of one
// server share slots.
type limitListener struct {
	net.Listener
	slots chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newLimitListener(l net.Listener, slots chan struct{}) *limitListener {
	return &limitListener{Listener: l, slots: slots, done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back once: at Close, or earlier when a handler
// takes the socket out of the bound (a wrong-credential waiter).
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) releaseSlot() { c.once.Do(c.release) }

func (c *limitConn) Close() error {
	c.releaseSlot()
	return c.Conn.Close()
}

// authGate serializes the answers to wrong credentials across all
// connections: each failure gets the next free turn, interval after the
// previous one. A waiter that disconnects keeps its turn, so closing early
// does not buy another guess sooner. Correct credentials never pass here.
type authGate struct {
	interval time.Duration
	mu       sync.Mutex
	next     time.Time
	waiting  atomic.Int64 // failures not yet answered
	outside  atomic.Int64 // of those, waiting outside the connection bound
}

// turn reserves the next answer time.
func (g *authGate) turn() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if g.next.Before(now) {
		g.next = now
	}
	g.next = g.next.Add(g.interval)
	return g.next
}

// wait sleeps until t or until stop is closed (server shutdown).
func wait(t time.Time, stop <-chan struct{}) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-stop:
		return false
	}
}

// rateLog logs at most one line per every, counting the lines it dropped.
type rateLog struct {
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (r *rateLog) log(l *slog.Logger, msg string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < r.every {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	l.Warn(msg, append(args, "suppressed_since_last", n)...)
}

// hostAllowed is the DNS-rebinding guard: a browser sends the name it
// resolved, so a Host that is not an IP literal, localhost or a name the
// operator configured means a page made us answer under its own name.
// No Host at all (HTTP/1.0, not a browser) is allowed.
func (s *Server) hostAllowed(host string) bool {
	if host == "" {
		return true
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if i := strings.IndexByte(name, '%'); i >= 0 { // IPv6 zone
		name = name[:i]
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return true
	}
	for _, h := range s.allowedHosts {
		if h == name {
			return true
		}
	}
	return false
}

// originAllowed: a request a browser sends from a page carries Origin; it
// must be this server's own origin (http, the Host the page was loaded
// from) or one the operator configured with -rpcallowedorigin.
func (s *Server) originAllowed(origin, host string) bool {
	o, ok := normalizeOrigin(origin)
	if !ok {
		return false // "null" and malformed origins
	}
	if own, ok := normalizeOrigin("http://" + host); ok && host != "" && o == own {
		return true
	}
	for _, a := range s.allowedOrigins {
		if o == a {
			return true
		}
	}
	return false
}

// normalizeOrigin lowercases scheme and host and drops a default port, so
// "http://Host:80" and "http://host" compare equal.
func normalizeOrigin(origin string) (string, bool) {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host, true
}

// checkOrigins validates -rpcallowedorigin entries and returns them
// normalized, with their host names (allowed as Host headers too: a page
// on such an origin reaches us through a proxy that keeps its name).
func checkOrigins(origins []string) (norm, hosts []string, err error) {
	for _, o := range origins {
		n, ok := normalizeOrigin(o)
		if !ok {
			return nil, nil, &originError{o}
		}
		norm = append(norm, n)
		u, _ := url.Parse(n)
		hosts = append(hosts, strings.ToLower(u.Hostname()))
	}
	return norm, hosts, nil
}

type originError struct{ origin string }

func (e *originError) Error() string {
	return "rpcallowedorigin " + e.origin + ": want scheme://host[:port] (http or https, no path)"
}
