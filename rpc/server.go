package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twgroupd/twgroupd/internal/tjson"
)

// Defaults (spec §8.1).
const (
	DefaultPort         = 28332
	DefaultMaxBodyBytes = 4 << 20
	// DefaultVersion is getinfo's "version": twisterd 0.9.40's, so that
	// twister-html enables group key import (it needs >= 93800).
	DefaultVersion = 94000
	// DefaultMaxInFlight bounds concurrently executing requests (twisterd's
	// -rpcthreads is 10).
	DefaultMaxInFlight = 16
	// authFailDelay is twisterd's sleep after a wrong password shorter than
	// 20 characters, against brute force.
	authFailDelay      = 250 * time.Millisecond
	shortPasswordLimit = 20
	serverHeader       = "bitcoin-json-rpc/twgroupd"
	bodyReadTimeout    = time.Minute
	cspHeader          = "script-src 'self' 'unsafe-eval'"
)

// Config configures a Server. User and Password are required.
type Config struct {
	User     string
	Password string
	// Port is used when Listen is empty: loopback only (127.0.0.1 and ::1),
	// or every address when AllowIP is set, as twisterd binds.
	Port int
	// AllowIP lists the non-loopback clients allowed, as twisterd's
	// -rpcallowip: an address with * and ? wildcards ("192.168.1.*"), or a
	// CIDR prefix ("10.0.0.0/8").
	AllowIP []string
	// Listen overrides the bind addresses (host:port, port 0 allowed).
	Listen []string
	// HTMLDir holds twister-html; see HTMLDir() for twisterd's choice.
	HTMLDir string
	// MaxBodyBytes bounds a request body (DefaultMaxBodyBytes if 0).
	MaxBodyBytes int64
	// MaxInFlight bounds concurrent requests (DefaultMaxInFlight if 0).
	MaxInFlight int
	// Version is getinfo's "version" (DefaultVersion if 0).
	Version int
	Logger  *slog.Logger

	DM       DMEngine
	Groups   GroupService
	Wallet   Wallet
	Registry KeySource
	DHT      DHTNode
	Swarm    Swarm
	Node     NodeInfo
	// Registrar answers sendnewusertransaction; nil sends it upstream (or
	// answers a clear error without one).
	Registrar Registrar
	// Feed delivers new messages to websocket clients; nil disables /ws.
	Feed *Feed
	// Stop is called (once, asynchronously) by the stop method.
	Stop func()
	// Upstream receives the methods twgroupd does not implement; nil makes
	// them answer -32601 "Method not found".
	Upstream Forwarder
}

// Server is twgroupd's JSON-RPC server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	methods  map[string]*method
	names    []string // sorted method names, for help
	http     *http.Server
	slots    chan struct{}
	authHash [32]byte

	ready    chan struct{}
	mu       sync.Mutex
	addrs    []net.Addr
	stopOnce sync.Once
	started  atomic.Bool
	ws       wsClients
}

// ErrWeakCredentials is twisterd's refusal to serve RPC without a real
// password.
var ErrWeakCredentials = errors.New("you must set rpcpassword, and rpcuser and rpcpassword must not be the same")

// CheckCredentials refuses an empty rpcpassword or one equal to rpcuser, as
// twisterd does at start; a daemon calls it before opening anything.
func CheckCredentials(user, password string) error {
	if password == "" || password == user {
		return ErrWeakCredentials
	}
	return nil
}

// New checks cfg and returns a server; Serve starts it.
func New(cfg Config) (*Server, error) {
	if err := CheckCredentials(cfg.User, cfg.Password); err != nil {
		return nil, err
	}
	for _, a := range cfg.AllowIP {
		if err := checkAllowIP(a); err != nil {
			return nil, fmt.Errorf("rpc: rpcallowip %q: %w", a, err)
		}
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.Version == 0 {
		cfg.Version = DefaultVersion
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		cfg:      cfg,
		log:      log.With("component", "rpc"),
		slots:    make(chan struct{}, cfg.MaxInFlight),
		authHash: credentialHash(cfg.User + ":" + cfg.Password),
		ready:    make(chan struct{}),
	}
	s.methods, s.names = s.methodTable()
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Ready is closed once every listener is bound (systemd READY=1).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs are the bound addresses; valid after Ready.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// listenAddrs is twisterd's binding: loopback only without rpcallowip.
func (s *Server) listenAddrs() (required, optional []string) {
	if len(s.cfg.Listen) > 0 {
		return s.cfg.Listen, nil
	}
	port := strconv.Itoa(s.cfg.Port)
	if len(s.cfg.AllowIP) > 0 {
		return []string{net.JoinHostPort("", port)}, nil
	}
	return []string{net.JoinHostPort("127.0.0.1", port)}, []string{net.JoinHostPort("::1", port)}
}

// Serve binds the listeners, signals Ready and serves until ctx is done or
// Shutdown is called. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("rpc: Serve called twice")
	}
	required, optional := s.listenAddrs()
	var lns []net.Listener
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	var lc net.ListenConfig
	for _, a := range required {
		l, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			closeAll()
			return fmt.Errorf("rpc: listen on %s: %w", a, err)
		}
		lns = append(lns, l)
	}
	for _, a := range optional {
		l, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			s.log.Info("rpc: optional listen address unavailable", "addr", a, "err", err)
			continue
		}
		lns = append(lns, l)
	}
	s.mu.Lock()
	for _, l := range lns {
		s.addrs = append(s.addrs, l.Addr())
	}
	s.mu.Unlock()
	for _, l := range lns {
		s.log.Info("rpc listening", "addr", l.Addr().String())
	}
	close(s.ready)

	errc := make(chan error, len(lns))
	for _, l := range lns {
		go func() { errc <- s.http.Serve(l) }()
	}
	var firstErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			firstErr = fmt.Errorf("rpc: serve: %w", err)
		}
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(shutCtx); err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

// Shutdown stops accepting, closes websocket clients and waits for
// in-flight requests (bounded by ctx).
func (s *Server) Shutdown(ctx context.Context) error {
	s.ws.closeAll()
	if err := s.http.Shutdown(ctx); err != nil {
		return fmt.Errorf("rpc: shutdown: %w", err)
	}
	return nil
}

// ServeHTTP is twisterd's ServiceConnection: client filter, auth, then
// static files or JSON-RPC.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Server", serverHeader)
	if !s.clientAllowed(r.RemoteAddr) {
		h.Set("Connection", "close")
		h.Set("Content-Type", "application/json")
		h.Set("Content-Security-Policy", cspHeader)
		w.WriteHeader(http.StatusForbidden)
		return
	}
	if !s.authorized(r) {
		s.unauthorized(w)
		return
	}
	if isWebsocket(r) && s.cfg.Feed != nil && (r.URL.Path == "/" || r.URL.Path == "/ws") {
		s.serveWebsocket(w, r)
		return
	}
	uri := r.RequestURI
	if r.Method == http.MethodGet && uri == "/" {
		uri = "/home.html"
	}
	// Only "/" is JSON-RPC; other URIs are files unless they start with
	// /rss or contain "..", which twisterd hands to the JSON-RPC parser.
	if uri != "/" && !strings.HasPrefix(uri, "/rss") && !strings.Contains(uri, "..") && !strings.Contains(r.URL.Path, "..") {
		s.serveFile(w, r, uri)
		return
	}
	s.serveRPC(w, r)
}

func (s *Server) acquire(ctx context.Context) bool {
	select {
	case s.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Server) release() { <-s.slots }

// serveRPC reads a bounded body and answers a single request or a batch.
func (s *Server) serveRPC(w http.ResponseWriter, r *http.Request) {
	if !s.acquire(r.Context()) {
		return
	}
	defer s.release()
	if r.ContentLength > s.cfg.MaxBodyBytes {
		s.tooLarge(w)
		return
	}
	// A client trickling its body must not hold a slot for long.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.tooLarge(w)
			return
		}
		s.log.Debug("rpc: read body", "err", err)
		return
	}
	keepAlive := !strings.EqualFold(r.Header.Get("Connection"), "close")
	reply, status, fwd := s.handleBody(r.Context(), body)
	if fwd != nil {
		s.writeForwarded(w, fwd)
		return
	}
	if status != http.StatusOK {
		keepAlive = false
	}
	s.writeJSON(w, status, reply, keepAlive)
}

// forwarded is an upstream's answer, passed on unchanged.
type forwarded struct {
	status int
	header http.Header
	reply  []byte
}

// handleBody runs a request body: a reply and its HTTP status, or an
// upstream answer to pass on.
func (s *Server) handleBody(ctx context.Context, body []byte) ([]byte, int, *forwarded) {
	trimmed := trimJSON(body)
	if len(trimmed) == 0 || !jsonValid(trimmed) {
		return errorReply(&Error{Code: CodeParse, Message: "Parse error"}, nil), http.StatusInternalServerError, nil
	}
	switch typeOf(trimmed) {
	case tjson.KindObject:
		req, perr := parseRequest(trimmed)
		if perr != nil {
			return errorReply(perr, req.id), perr.httpStatus(), nil
		}
		result, err := s.execute(ctx, req)
		if errors.Is(err, errForward) {
			status, header, reply, ferr := s.cfg.Upstream.Forward(ctx, body)
			if ferr != nil {
				e := s.replyError(req.method, ferr)
				return errorReply(e, req.id), e.httpStatus(), nil
			}
			return nil, 0, &forwarded{status: status, header: header, reply: reply}
		}
		if err != nil {
			e := s.replyError(req.method, err)
			return errorReply(e, req.id), e.httpStatus(), nil
		}
		return append(appendReply(nil, result, nil, req.id), '\n'), http.StatusOK, nil
	case tjson.KindArray:
		elems, err := arrayElements(trimmed)
		if err != nil {
			return errorReply(&Error{Code: CodeParse, Message: "Parse error"}, nil), http.StatusInternalServerError, nil
		}
		return s.execBatch(ctx, elems), http.StatusOK, nil
	}
	return errorReply(&Error{Code: CodeParse, Message: "Top-level object parse error"}, nil), http.StatusInternalServerError, nil
}

func errorReply(e *Error, id []byte) []byte {
	return append(appendReply(nil, nil, e, id), '\n')
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, body []byte, keepAlive bool) {
	h := w.Header()
	if keepAlive {
		h.Set("Connection", "keep-alive")
	} else {
		h.Set("Connection", "close")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Content-Type", "application/json")
	h.Set("Content-Security-Policy", cspHeader)
	w.WriteHeader(status)
	w.Write(body)
}

func (s *Server) writeForwarded(w http.ResponseWriter, f *forwarded) {
	h := w.Header()
	ct := f.header.Get("Content-Type")
	if ct == "" {
		ct = "application/json"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Security-Policy", cspHeader)
	h.Set("Content-Length", strconv.Itoa(len(f.reply)))
	if f.status != http.StatusOK {
		h.Set("Connection", "close")
	}
	status := f.status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	w.Write(f.reply)
}

// tooLarge refuses a body over MaxBodyBytes without reading it whole.
func (s *Server) tooLarge(w http.ResponseWriter) {
	body := errorReply(&Error{Code: CodeInvalidRequest, Message: "Request body too large"}, nil)
	s.writeJSON(w, http.StatusRequestEntityTooLarge, body, false)
}
