package config

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Cookie authentication, as bitcoind's: a daemon started without
// rpcpassword writes a fresh random credential to <datadir>/.cookie (0600)
// and removes it at stop; clients on the same host read it, so no password
// has to appear in a config file or in any process's argv.
const (
	CookieFileName = ".cookie"
	CookieUser     = "__cookie__"
)

// ErrNoCookie: no rpcpassword and no cookie file to read.
var ErrNoCookie = errors.New("no authentication cookie")

// CookiePath is the cookie file of datadir.
func CookiePath(dataDir string) string { return filepath.Join(dataDir, CookieFileName) }

// WriteCookie writes a new "__cookie__:<64 hex digits>" to the cookie file
// (through a temporary file and a rename, so a client never reads half of
// it) and returns the credentials.
func WriteCookie(dataDir string) (user, password string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("cookie: %w", err)
	}
	password = hex.EncodeToString(b[:])
	path := CookiePath(dataDir)
	tmp, err := os.CreateTemp(dataDir, CookieFileName+".tmp*")
	if err != nil {
		return "", "", fmt.Errorf("cookie: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", "", fmt.Errorf("cookie: %w", err)
	}
	if _, err := tmp.WriteString(CookieUser + ":" + password); err != nil {
		tmp.Close()
		return "", "", fmt.Errorf("cookie: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", "", fmt.Errorf("cookie: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", "", fmt.Errorf("cookie: %w", err)
	}
	return CookieUser, password, nil
}

// ReadCookie returns the credentials of datadir's cookie file.
func ReadCookie(dataDir string) (user, password string, err error) {
	data, err := os.ReadFile(CookiePath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return "", "", ErrNoCookie
	}
	if err != nil {
		return "", "", fmt.Errorf("cookie: %w", err)
	}
	user, password, ok := strings.Cut(strings.TrimSpace(string(data)), ":")
	if !ok || user == "" || password == "" {
		return "", "", fmt.Errorf("cookie: %s is not user:password", CookiePath(dataDir))
	}
	return user, password, nil
}

// RemoveCookie deletes the cookie file if it still holds password (a newer
// daemon's cookie is left alone).
func RemoveCookie(dataDir, password string) error {
	path := CookiePath(dataDir)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cookie: %w", err)
	}
	if !bytes.Equal(bytes.TrimSpace(data), []byte(CookieUser+":"+password)) {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("cookie: %w", err)
	}
	return nil
}

// RPCCredentials are what a client sends: rpcuser/rpcpassword when a
// password is set, else the daemon's cookie from the datadir.
func (c Config) RPCCredentials() (user, password string, err error) {
	if c.RPCPassword != "" {
		return c.RPCUser, c.RPCPassword, nil
	}
	return ReadCookie(c.DataDir)
}
