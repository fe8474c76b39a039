package rpc

import (
	"errors"
	"html"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// SystemHTMLDir is where distributions install twister-html.
const SystemHTMLDir = "/usr/share/twister/html"

// HTMLDir is twisterd's GetHTMLDir: the -htmldir flag if given, else
// /usr/share/twister/html if it exists, else <datadir>/html.
func HTMLDir(flag, datadir string) string {
	if flag != "" {
		return flag
	}
	if fi, err := os.Stat(SystemHTMLDir); err == nil && fi.IsDir() {
		return SystemHTMLDir
	}
	return filepath.Join(datadir, "html")
}

// contentType picks the type by substring of the request URI, later checks
// winning, exactly as twisterd's ServiceConnection (so "/x.json" is
// JavaScript and a query string can change the type).
func contentType(uri string) string {
	ct := "text/html; charset=utf-8"
	if strings.Contains(uri, ".js") {
		ct = "text/javascript; charset=utf-8"
	}
	if strings.Contains(uri, ".css") {
		ct = "text/css"
	}
	if strings.Contains(uri, ".png") {
		ct = "image/png"
	}
	if strings.Contains(uri, ".gif") {
		ct = "image/gif"
	}
	if strings.Contains(uri, ".ttf") {
		ct = "application/x-font-ttf"
	}
	if strings.Contains(uri, ".jpg") || strings.Contains(uri, ".jpeg") {
		ct = "image/jpeg"
	}
	if strings.Contains(uri, ".mp3") {
		ct = "audio/mpeg"
	}
	if strings.Contains(uri, ".ogg") {
		ct = "audio/ogg"
	}
	return ct
}

// serveFile serves uri (already rewritten from "/" to "/home.html") from
// the HTML dir. os.Root confines the lookup to the directory, symlinks
// included, so no request can read outside it.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, uri string) {
	name := r.URL.Path
	if uri == "/home.html" && r.URL.Path == "/" {
		name = "/home.html"
	}
	rel := strings.TrimPrefix(path.Clean("/"+name), "/")
	if rel == "" {
		rel = "."
	}
	// A cloned html dir holds .git (its config names the remote, maybe with
	// a token); dot files are never part of a site.
	if hiddenPath(rel) {
		s.notFound(w, name)
		return
	}
	f, size, err := s.openHTML(rel)
	if err != nil {
		s.log.Debug("rpc: static file not found", "path", name, "err", err)
		s.notFound(w, name)
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Connection", "keep-alive")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("Content-Type", contentType(uri))
	h.Set("Content-Security-Policy", cspHeader)
	s.writeDeadline(w)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		io.Copy(deadlineWriter{w: w, s: s}, f)
	}
}

func (s *Server) openHTML(rel string) (*os.File, int64, error) {
	if s.cfg.HTMLDir == "" {
		return nil, 0, errors.New("no html dir")
	}
	root, err := os.OpenRoot(s.cfg.HTMLDir)
	if err != nil {
		return nil, 0, err
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fs.ErrNotExist
		}
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// notFound is twisterd's 404 page (with the name HTML-escaped).
func (s *Server) notFound(w http.ResponseWriter, name string) {
	fname := filepath.Join(s.cfg.HTMLDir, filepath.FromSlash(name))
	body := "<html><body>\r\n<b>ERROR 404</b><br/>ServiceConnection: file '<b>" +
		html.EscapeString(fname) + "</b>' not found\r\n</body></html>\r\n"
	h := w.Header()
	h.Set("Connection", "close")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", cspHeader)
	s.writeDeadline(w)
	w.WriteHeader(http.StatusNotFound)
	io.WriteString(w, body)
}

// hiddenPath reports whether a component of the slash-separated rel path
// starts with '.' (".git/config", ".htpasswd", "x/.env").
func hiddenPath(rel string) bool {
	for _, c := range strings.Split(rel, "/") {
		if strings.HasPrefix(c, ".") && c != "." {
			return true
		}
	}
	return false
}

// deadlineWriter renews the write deadline before each write of a file,
// so a slow reader gets WriteTimeout per chunk, and one that stops
// reading is cut.
type deadlineWriter struct {
	w http.ResponseWriter
	s *Server
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.s.writeDeadline(d.w)
	return d.w.Write(p)
}
