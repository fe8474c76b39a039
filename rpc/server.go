package rpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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
	"github.com/twgroupd/twgroupd/internal/upstream"
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
	serverHeader       = "bitcoin-json-rpc/twgroupd"
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
	// AllowedOrigins are web origins (scheme://host[:port]) besides the
	// server's own whose pages may call us (-rpcallowedorigin).
	AllowedOrigins []string
	// AllowedHosts are host names accepted in the Host header besides IP
	// literals, localhost and the hosts of AllowedOrigins (-rpcallowedhost).
	AllowedHosts []string
	// MaxConns bounds open connections (DefaultMaxConns if 0).
	MaxConns int
	// MaxBatch bounds the elements of a batch (DefaultMaxBatch if 0).
	MaxBatch int
	// BodyTimeout bounds reading a request body (DefaultBodyTimeout if 0).
	BodyTimeout time.Duration
	// WriteTimeout bounds each reply write (DefaultWriteTimeout if 0).
	WriteTimeout time.Duration
	// AuthFailInterval spaces answers to wrong credentials across all
	// connections (DefaultAuthFailInterval if 0).
	AuthFailInterval time.Duration
	Logger           *slog.Logger

	DM       DMEngine
	Groups   GroupService
	Wallet   Wallet
	Registry KeySource
	Chain    Chain // the light blockchain (-registry=chain); nil: chain methods go upstream
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
	// connSlots bounds open connections over all listeners.
	connSlots chan struct{}
	gate      authGate
	authLog   rateLog
	stopCh    chan struct{}

	id             string   // in upstream.ViaHeader, to detect forwarding loops
	allowedOrigins []string // normalized
	allowedHosts   []string // lowercase

	ready    chan struct{}
	mu       sync.Mutex
	addrs    []net.Addr
	stopOnce sync.Once
	shutOnce sync.Once
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
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.AuthFailInterval <= 0 {
		cfg.AuthFailInterval = DefaultAuthFailInterval
	}
	origins, originHosts, err := checkOrigins(cfg.AllowedOrigins)
	if err != nil {
		return nil, fmt.Errorf("rpc: %w", err)
	}
	hosts := originHosts
	for _, h := range cfg.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/:@ ") {
			return nil, fmt.Errorf("rpc: rpcallowedhost %q: want a host name", h)
		}
		hosts = append(hosts, strings.ToLower(strings.TrimSuffix(h, ".")))
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		cfg:       cfg,
		log:       log.With("component", "rpc"),
		slots:     make(chan struct{}, cfg.MaxInFlight),
		authHash:  credentialHash(cfg.User + ":" + cfg.Password),
		ready:     make(chan struct{}),
		stopCh:    make(chan struct{}),
		connSlots: make(chan struct{}, cfg.MaxConns),
		gate:      authGate{interval: cfg.AuthFailInterval},
		authLog:   rateLog{every: authLogEvery},

		id:             newServerID(),
		allowedOrigins: origins,
		allowedHosts:   hosts,
	}
	s.methods, s.names = s.methodTable()
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.BodyTimeout,
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
		lns = append(lns, newLimitListener(l, s.connSlots))
	}
	for _, a := range optional {
		l, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			s.log.Info("rpc: optional listen address unavailable", "addr", a, "err", err)
			continue
		}
		lns = append(lns, newLimitListener(l, s.connSlots))
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
	s.shutOnce.Do(func() { close(s.stopCh) })
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
	// Before auth, so a hostile page cannot even spend our guess budget.
	if !s.hostAllowed(r.Host) {
		s.forbidden(w, "Host header is not an IP address, localhost or an -rpcallowedhost name")
		return
	}
	if origin, ok := r.Header["Origin"]; ok && (len(origin) != 1 || !s.originAllowed(origin[0], r.Host)) {
		s.forbidden(w, "Origin is not this server's own origin or an -rpcallowedorigin")
		return
	}
	switch s.checkAuth(r) {
	case authMissing:
		s.unauthorized(w)
		return
	case authWrong:
		s.refuseGuess(w, r)
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

// serveRPC reads a bounded body, then takes an execution slot and answers
// a single request or a batch. The body is read first, under its own size
// and time limits, so clients trickling bodies hold connections, never
// slots.
func (s *Server) serveRPC(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	if !s.acquire(r.Context()) {
		return
	}
	defer s.release()
	keepAlive := !strings.EqualFold(r.Header.Get("Connection"), "close")
	ctx := s.viaContext(r)
	if n, ok := batchCount(body); ok {
		if e := s.batchLimit(n); e != nil {
			s.writeJSON(w, e.httpStatus(), errorReply(e, nil), false)
			return
		}
		if elems, err := tjson.Elements(trimJSON(body), tjson.RFC8259); err == nil {
			s.writeBatch(ctx, w, elems, keepAlive)
			return
		}
	}
	reply, status, fwd := s.handleBody(ctx, body)
	if fwd != nil {
		s.writeForwarded(w, fwd)
		return
	}
	if status != http.StatusOK {
		keepAlive = false
	}
	s.writeJSON(w, status, reply, keepAlive)
}

// readBody reads the request body within MaxBodyBytes and BodyTimeout.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > s.cfg.MaxBodyBytes {
		s.tooLarge(w)
		return nil, false
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err == nil {
		// No deadline while the method runs: net/http's background read
		// would take its expiry for a closed connection and cancel the call.
		// On errors the deadline stays, or net/http's discarding of the
		// unread body after the reply would wait for the trickler.
		_ = rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			s.tooLarge(w)
		case errors.As(err, &ne) && ne.Timeout():
			e := &Error{Code: CodeInvalidRequest, Message: "Request body not received within " + s.cfg.BodyTimeout.String()}
			s.writeJSON(w, http.StatusRequestTimeout, errorReply(e, nil), false)
		default:
			s.log.Debug("rpc: read body", "err", err)
		}
		return nil, false
	}
	return body, true
}

// batchCount counts the elements of a body that is a JSON array, without
// splitting it (a batch over the limit is refused before any copy).
func batchCount(body []byte) (int, bool) {
	trimmed := trimJSON(body)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return 0, false
	}
	return tjson.Len(trimmed, tjson.RFC8259)
}

// batchLimit refuses a batch of more than MaxBatch elements before any runs.
func (s *Server) batchLimit(n int) *Error {
	if n <= s.cfg.MaxBatch {
		return nil
	}
	return &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf(
		"batch of %d requests is over the limit of %d requests per batch", n, s.cfg.MaxBatch)}
}

// batchBuffer is the reply size up to which a batch is answered as one body
// with a Content-Length, as twisterd; a larger reply is streamed (chunked)
// element by element, so a batch never holds more than this in memory
// beyond the element being written.
const batchBuffer = 1 << 20

// writeBatch runs each element in order (JSONRPCExecBatch).
func (s *Server) writeBatch(ctx context.Context, w http.ResponseWriter, elems []json.RawMessage, keepAlive bool) {
	buf := []byte{'['}
	streaming := false
	flush := func() bool {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		_, err := w.Write(buf)
		buf = buf[:0]
		return err == nil
	}
	for i, e := range elems {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, s.execOne(ctx, e)...)
		if len(buf) < batchBuffer {
			continue
		}
		if !streaming {
			streaming = true
			s.setJSONHeaders(w, keepAlive)
			w.WriteHeader(http.StatusOK)
		}
		if !flush() {
			return
		}
	}
	buf = append(buf, ']', '\n')
	if !streaming {
		s.writeJSON(w, http.StatusOK, buf, keepAlive)
		return
	}
	flush()
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
	if len(trimmed) == 0 || !tjson.Valid(trimmed, tjson.RFC8259) {
		return errorReply(&Error{Code: CodeParse, Message: "Parse error"}, nil), http.StatusInternalServerError, nil
	}
	switch tjson.KindOf(trimmed) {
	case tjson.KindObject:
		req, perr := parseRequest(trimmed)
		if perr != nil {
			return errorReply(perr, req.id), perr.httpStatus(), nil
		}
		result, err := s.execute(ctx, req)
		if errors.Is(err, errForward) {
			status, header, reply, ferr := s.forward(ctx, body)
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
		// A valid array is a batch, taken by serveRPC; this one did not split.
		return errorReply(&Error{Code: CodeParse, Message: "Parse error"}, nil), http.StatusInternalServerError, nil
	}
	return errorReply(&Error{Code: CodeParse, Message: "Top-level object parse error"}, nil), http.StatusInternalServerError, nil
}

func errorReply(e *Error, id []byte) []byte {
	return append(appendReply(nil, nil, e, id), '\n')
}

func (s *Server) setJSONHeaders(w http.ResponseWriter, keepAlive bool) {
	h := w.Header()
	if keepAlive {
		h.Set("Connection", "keep-alive")
	} else {
		h.Set("Connection", "close")
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Security-Policy", cspHeader)
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, body []byte, keepAlive bool) {
	s.setJSONHeaders(w, keepAlive)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	s.writeDeadline(w)
	w.WriteHeader(status)
	w.Write(body)
}

// writeDeadline bounds the write of a reply about to start.
func (s *Server) writeDeadline(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
}

// forbidden refuses a request a hostile page may have sent (Origin, Host).
func (s *Server) forbidden(w http.ResponseWriter, why string) {
	body := "403 Forbidden: " + why + "\n"
	h := w.Header()
	h.Set("Connection", "close")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Content-Security-Policy", cspHeader)
	s.writeDeadline(w)
	w.WriteHeader(http.StatusForbidden)
	io.WriteString(w, body)
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
	s.writeDeadline(w)
	w.WriteHeader(status)
	w.Write(f.reply)
}

// tooLarge refuses a body over MaxBodyBytes without reading it whole.
func (s *Server) tooLarge(w http.ResponseWriter) {
	body := errorReply(&Error{Code: CodeInvalidRequest, Message: "Request body too large"}, nil)
	s.writeJSON(w, http.StatusRequestEntityTooLarge, body, false)
}

// newServerID is a random id naming this server in forwarding chains.
func newServerID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type loopKey struct{}

// viaContext extends the request's forwarding chain with this server, or
// marks it as a loop, so forward refuses instead of calling itself again.
func (s *Server) viaContext(r *http.Request) context.Context {
	ctx := r.Context()
	if s.cfg.Upstream == nil {
		return ctx
	}
	via, err := upstream.CheckVia(r.Header.Get(upstream.ViaHeader), s.id)
	if err != nil {
		return context.WithValue(ctx, loopKey{}, err)
	}
	return upstream.WithVia(ctx, via)
}

// forward sends a request body upstream unless it has come round a loop.
func (s *Server) forward(ctx context.Context, body []byte) (int, http.Header, []byte, error) {
	if err, ok := ctx.Value(loopKey{}).(error); ok {
		return 0, nil, nil, &Error{Code: CodeInternal, Message: err.Error()}
	}
	return s.cfg.Upstream.Forward(ctx, body)
}
