package rpc

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// unauthorizedBody is twisterd's fixed 401 page (296 bytes).
const unauthorizedBody = "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01 Transitional//EN\"\r\n" +
	"\"http://www.w3.org/TR/1999/REC-html401-19991224/loose.dtd\">\r\n" +
	"<HTML>\r\n" +
	"<HEAD>\r\n" +
	"<TITLE>Error</TITLE>\r\n" +
	"<META HTTP-EQUIV='Content-Type' CONTENT='text/html; charset=ISO-8859-1'>\r\n" +
	"</HEAD>\r\n" +
	"<BODY><H1>401 Unauthorized.</H1></BODY>\r\n" +
	"</HTML>\r\n"

// credentialHash hides the length of the secret from the comparison.
func credentialHash(userColonPass string) [32]byte {
	return sha256.Sum256([]byte(userColonPass))
}

type authResult int

const (
	authOK authResult = iota
	authMissing
	authWrong
)

// checkAuth is twisterd's HTTPAuthorized: "Basic " then base64 of
// "user:password", compared in constant time. A missing header is not a
// guess (browsers ask first without credentials); anything else that does
// not match is.
func (s *Server) checkAuth(r *http.Request) authResult {
	header, present := r.Header["Authorization"]
	if !present || len(header) == 0 {
		return authMissing
	}
	if v := header[0]; strings.HasPrefix(v, "Basic ") {
		if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v[len("Basic "):])); err == nil {
			got := credentialHash(string(dec))
			if subtle.ConstantTimeCompare(got[:], s.authHash[:]) == 1 {
				return authOK
			}
		}
	}
	return authWrong
}

// refuseGuess answers wrong credentials with 401 at the caller's turn of
// the server-wide authGate (twisterd sleeps 250 ms per request, and only
// for short passwords, so parallel guesses were not slowed). The waiter is
// taken out of the connection bound (hijacked) so that a crowd of guessers
// cannot keep correct clients from connecting.
func (s *Server) refuseGuess(w http.ResponseWriter, r *http.Request) {
	s.authLog.log(s.log, "rpc: incorrect password attempt", "remote", r.RemoteAddr)
	g := &s.gate
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	at := g.turn()
	if g.outside.Add(1) <= maxAuthWaiters {
		defer g.outside.Add(-1)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			s.answerGuessLater(conn, at)
			return
		}
	} else {
		g.outside.Add(-1)
	}
	if wait(at, s.stopCh) {
		s.unauthorized(w)
	}
}

// answerGuessLater writes the 401 on a hijacked connection at time at.
func (s *Server) answerGuessLater(conn net.Conn, at time.Time) {
	defer conn.Close()
	if lc, ok := conn.(*limitConn); ok {
		lc.releaseSlot()
	}
	if !wait(at, s.stopCh) {
		return
	}
	_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	head := "HTTP/1.1 401 Unauthorized\r\n" +
		"Date: " + time.Now().UTC().Format(http.TimeFormat) + "\r\n" +
		"Server: " + serverHeader + "\r\n" +
		"WWW-Authenticate: Basic realm=\"jsonrpc\"\r\n" +
		"Content-Type: text/html\r\n" +
		"Content-Length: " + strconv.Itoa(len(unauthorizedBody)) + "\r\n" +
		"Connection: close\r\n\r\n"
	if _, err := io.WriteString(conn, head+unauthorizedBody); err != nil {
		return
	}
	// Close the write side and drain what the client still sends (its
	// body), so the close does not reset the connection before the client
	// read the answer.
	raw := conn
	if lc, ok := conn.(*limitConn); ok {
		raw = lc.Conn
	}
	if cw, ok := raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, s.cfg.MaxBodyBytes))
	}
}

func (s *Server) unauthorized(w http.ResponseWriter) {
	h := w.Header()
	h.Set("WWW-Authenticate", `Basic realm="jsonrpc"`)
	h.Set("Content-Type", "text/html")
	h.Set("Content-Length", strconv.Itoa(len(unauthorizedBody)))
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusUnauthorized)
	w.Write([]byte(unauthorizedBody))
}

// clientAllowed is twisterd's ClientAllowed: loopback (127.0.0.0/8, ::1,
// also v4-mapped) always, others only when they match an -rpcallowip entry.
func (s *Server) clientAllowed(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	addr = addr.Unmap().WithZone("")
	if addr.IsLoopback() {
		return true
	}
	ip := addr.String()
	for _, allow := range s.cfg.AllowIP {
		if prefix, err := netip.ParsePrefix(allow); err == nil {
			if prefix.Contains(addr) {
				return true
			}
			continue
		}
		if wildcardMatch(ip, allow) {
			return true
		}
	}
	return false
}

// checkAllowIP accepts a CIDR prefix or an address pattern with wildcards.
func checkAllowIP(allow string) error {
	if allow == "" {
		return errors.New("empty pattern")
	}
	if _, err := netip.ParsePrefix(allow); err == nil {
		return nil
	}
	for _, c := range allow {
		if !(c == '*' || c == '?' || c == '.' || c == ':' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
			return errors.New("want an IP address, a pattern with * and ?, or a CIDR prefix")
		}
	}
	return nil
}

// wildcardMatch is bitcoin's WildcardMatch: '*' matches any run, '?' one
// character. Iterative, remembering the last star, so it stays linear.
func wildcardMatch(s, pattern string) bool {
	si, pi := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pattern) && (pattern[pi] == '?' || pattern[pi] == s[si]):
			si++
			pi++
		case pi < len(pattern) && pattern[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}
