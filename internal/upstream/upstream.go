// Package upstream is a JSON-RPC 1.0 client for a twisterd (or another
// twgroupd) reached over HTTP with basic auth. The registry uses it to ask a
// twisterd for users' keys and block heights, and the rpc server uses Forward
// to pass methods it does not implement through to the upstream daemon.
//
// It owns the HTTP conversation only: it knows nothing of posts, keys or
// wallets. Credentials given in the URL never appear in errors, logs or
// String(); request parameters are never logged (importprivkey carries WIFs).
package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twgroupd/twgroupd/internal/tjson"
)

// Defaults chosen for a local twisterd: replies of getposts or dhtget can be
// a few MiB, nothing legitimate comes near 32 MiB.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultMaxReplySize = 32 << 20
	// DefaultProofOfWorkTimeout bounds methods for which twisterd computes a
	// proof of work before it answers (proofOfWorkMethods): a live twisterd
	// took 1.4 s, 6.5 s and more than 30 s for sendnewusertransaction.
	DefaultProofOfWorkTimeout = 10 * time.Minute
)

// proofOfWorkMethods are the methods twisterd answers only after a proof of
// work of random length (sendnewusertransaction: the registration
// transaction's PoW, src/rpcrawtransaction.cpp).
var proofOfWorkMethods = map[string]bool{"sendnewusertransaction": true}

var (
	// ErrUnavailable wraps transport failures (connection refused, reset,
	// timeout): the upstream may come back, callers keep their work and retry.
	ErrUnavailable = errors.New("upstream twisterd unavailable")
	// ErrUnauthorized is returned when the upstream answers 401: the
	// configured rpcuser/rpcpassword are wrong.
	ErrUnauthorized = errors.New("upstream twisterd rejected the RPC credentials (HTTP 401)")
	// ErrReplyTooLarge is returned when a reply exceeds the size bound.
	ErrReplyTooLarge = errors.New("upstream reply too large")
	// ErrBadReply is returned when a reply is not a JSON-RPC 1.0 reply.
	ErrBadReply = errors.New("upstream reply is not a JSON-RPC reply")
)

// RPCError is an error reply of the upstream daemon, {"code":..,"message":..}
// (spec §8.1). The rpc server can hand Code and Message on unchanged.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("upstream rpc error %d: %s", e.Code, e.Message)
}

// Client talks to one upstream daemon. It is safe for concurrent use.
type Client struct {
	endpoint string // URL without userinfo
	redacted string
	user     string
	pass     string
	hasAuth  bool

	hc         *http.Client
	timeout    time.Duration
	powTimeout time.Duration
	maxReply   int64
	log        *slog.Logger
	nextID     atomic.Int64
}

// Option configures a Client.
type Option func(*Client)

// WithTimeout bounds each Call and Forward (default DefaultTimeout) but
// those of proofOfWorkMethods (WithProofOfWorkTimeout); a
// shorter deadline on the caller's context wins. d <= 0 keeps the default.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithProofOfWorkTimeout bounds Call and Forward of the methods twisterd
// answers after a proof of work (default DefaultProofOfWorkTimeout); a
// shorter deadline on the caller's context wins. d <= 0 keeps the default.
func WithProofOfWorkTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.powTimeout = d
		}
	}
}

// WithMaxReplySize bounds the bytes read from one reply (default
// DefaultMaxReplySize). n <= 0 keeps the default.
func WithMaxReplySize(n int64) Option {
	return func(c *Client) {
		if n > 0 {
			c.maxReply = n
		}
	}
}

// WithHTTPClient replaces the HTTP client (its Timeout should be zero; the
// per-call timeout is applied through the request context).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithLogger sets the logger (default slog.Default()). Only method names,
// statuses and durations are logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.log = l
		}
	}
}

// New returns a client for rawURL, e.g. "http://user:pass@127.0.0.1:28332".
// An empty path means "/", where twisterd serves JSON-RPC (spec §8.1).
func New(rawURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the whole URL, password included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("upstream url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("upstream url: scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("upstream url: missing host")
	}
	c := &Client{
		timeout:    DefaultTimeout,
		powTimeout: DefaultProofOfWorkTimeout,
		maxReply:   DefaultMaxReplySize,
		log:        slog.Default(),
	}
	if u.User != nil {
		c.user = u.User.Username()
		c.pass, _ = u.User.Password()
		c.hasAuth = true
	}
	u.User = nil
	if u.Path == "" {
		u.Path = "/"
	}
	u.Fragment = ""
	c.endpoint = u.String()
	if c.hasAuth {
		c.redacted = u.Scheme + "://" + url.User(c.user).String() + ":xxxxx@" + u.Host + u.RequestURI()
	} else {
		c.redacted = c.endpoint
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: &http.Transport{
			Proxy:                 nil, // a local daemon; never send its credentials through a proxy
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: max(c.timeout, c.powTimeout),
		}}
	}
	return c, nil
}

// String is the URL with the password replaced by "xxxxx".
func (c *Client) String() string { return c.redacted }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Call invokes method with params and returns the raw JSON result ("null"
// for a null result). An error reply is returned as *RPCError; transport
// failures wrap ErrUnavailable.
func (c *Client) Call(ctx context.Context, method string, params ...any) (json.RawMessage, error) {
	if params == nil {
		params = []any{}
	}
	id := c.nextID.Add(1)
	// tjson writes strings as raw bytes: twisterd decodes \uXXXX escapes to a
	// single byte (spec §8.2), so encoding/json's escapes would corrupt text.
	body, err := tjson.Marshal(tjson.Object{
		{Key: "jsonrpc", Value: "1.0"},
		{Key: "id", Value: id},
		{Key: "method", Value: method},
		{Key: "params", Value: params},
	})
	if err != nil {
		return nil, fmt.Errorf("upstream %s: encode params: %w", method, err)
	}
	start := time.Now()
	status, _, reply, err := c.post(ctx, body, c.timeoutFor(method))
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", method, err)
	}
	c.log.Debug("upstream call", "method", method, "status", status, "took", time.Since(start))
	result, rpcErr, err := decodeReply(reply, strconv.AppendInt(nil, id, 10))
	if err != nil {
		return nil, fmt.Errorf("upstream %s (HTTP %d): %w", method, status, err)
	}
	if rpcErr != nil {
		return nil, rpcErr
	}
	return result, nil
}

// Forward posts body (a JSON-RPC request or batch, as the client sent it) to
// the upstream with our credentials and returns its reply unchanged. Error
// replies (HTTP 404, 500) are replies, not errors; a 401 is an error
// (ErrUnauthorized), because relaying it would make a browser prompt for
// the upstream's credentials.
func (c *Client) Forward(ctx context.Context, body []byte) (status int, header http.Header, reply []byte, err error) {
	start := time.Now()
	var req struct {
		Method string `json:"method"`
	}
	_ = json.Unmarshal(body, &req) // a batch or bad body gets the default timeout
	status, header, reply, err = c.post(ctx, body, c.timeoutFor(req.Method))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("upstream forward: %w", err)
	}
	c.log.Debug("upstream forward", "status", status, "bytes", len(reply), "took", time.Since(start))
	return status, header, reply, nil
}

// timeoutFor is the time allowed for one call of method.
func (c *Client) timeoutFor(method string) time.Duration {
	if proofOfWorkMethods[method] {
		return c.powTimeout
	}
	return c.timeout
}

func (c *Client) post(ctx context.Context, body []byte, timeout time.Duration) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if via := viaFrom(ctx); via != "" {
		req.Header.Set(ViaHeader, via)
	}
	if c.hasAuth {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The request URL carries no userinfo, so err cannot leak the password.
		return 0, nil, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return 0, nil, nil, ErrUnauthorized
	}
	reply, err := io.ReadAll(io.LimitReader(resp.Body, c.maxReply+1))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%w: read reply: %w", ErrUnavailable, err)
	}
	if int64(len(reply)) > c.maxReply {
		return 0, nil, nil, fmt.Errorf("%w (more than %d bytes)", ErrReplyTooLarge, c.maxReply)
	}
	return resp.StatusCode, resp.Header, reply, nil
}

// decodeReply splits a JSON-RPC 1.0 reply {"result":..,"error":..,"id":..}.
// wantID is the JSON text of the id sent (nil: do not check).
func decodeReply(reply, wantID []byte) (json.RawMessage, *RPCError, error) {
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
		ID     json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(reply, &env); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadReply, err)
	}
	if wantID != nil && !bytes.Equal(bytes.TrimSpace(env.ID), wantID) {
		return nil, nil, fmt.Errorf("%w: id mismatch", ErrBadReply)
	}
	if len(env.Error) > 0 && !bytes.Equal(env.Error, []byte("null")) {
		rpcErr := new(RPCError)
		if err := json.Unmarshal(env.Error, rpcErr); err != nil {
			return nil, nil, fmt.Errorf("%w: error member: %w", ErrBadReply, err)
		}
		return nil, rpcErr, nil
	}
	if len(env.Result) == 0 {
		return json.RawMessage("null"), nil, nil
	}
	return env.Result, nil, nil
}
