// Package config turns twgroupd's command line and config file
// (twgroupd.conf) into one Config value.
//
// It owns the setting names, their defaults, the file syntax and the
// precedence rule (defaults < file < command line). It knows nothing of what
// the settings do: the daemon (internal/node) and the CLI client read the
// resulting Config. Names follow twisterd's -flags and twister.conf keys
// where twisterd has the setting (spec posts-dm-groups-rpc §8.1).
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Defaults. The RPC port is twisterd's, so frontends find twgroupd where
// they expect twisterd; run beside a twisterd by moving one of them.
const (
	DefaultRPCPort    = 28332
	DefaultDHTPort    = 29333
	DefaultBanTime    = 86400 // twisterd's -bantime
	DefaultRPCConnect = "127.0.0.1"
	DefaultDataDir    = "~/.twgroupd"
	ConfFileName      = "twgroupd.conf"
	// SystemHTMLDir is where twister-html is installed system-wide; twisterd
	// prefers it over <datadir>/html (src/util.cpp: GetHTMLDir).
	SystemHTMLDir = "/usr/share/twister/html"
)

// Config is the resolved configuration of one twgroupd process.
type Config struct {
	DataDir     string   // absolute
	ConfFile    string   // the file that was read; "" when there was none
	RPCUser     string   // rpcuser
	RPCPassword string   // rpcpassword; never log it (LogValue omits it)
	RPCPort     int      // rpcport: server listen port and client target port
	RPCAllowIP  []string // rpcallowip, twisterd wildcard syntax; empty: loopback only
	// rpcallowedorigin: web origins besides the server's own whose pages may
	// call the RPC; rpcallowedhost: names accepted in the Host header.
	RPCAllowedOrigin []string
	RPCAllowedHost   []string
	RPCConnect       string   // rpcconnect: host the CLI client calls
	HTMLDir          string   // htmldir; "" means twisterd's search (see ResolvedHTMLDir)
	Debug            bool     // debug: log at debug level
	Upstream         string   // upstream twisterd URL, may carry credentials; "" for none
	DHTPort          int      // dhtport: UDP DHT and TCP swarm port; 0 picks a free port
	Bind             string   // bind: IP the DHT and swarm listen on; "" for all (twisterd's 0.0.0.0)
	Bootstrap        []string // bootstrap/addnode: host:port of DHT peers to start from
	Registry         string   // path of a local registry file (absolute); "" for none
	// Chain: the registry is read from the blockchain itself (registry=chain,
	// or neither registry nor upstream given); docs/registry.md.
	Chain         bool
	Connect       []string // connect: the only chain P2P peers (host:port)
	AddNode       []string // addnode: chain P2P peers kept connected (also DHT bootstrap, see cli.md)
	SeedNode      []string // seednode: chain P2P peers asked for addresses
	NoDNSSeed     bool     // dnsseed=0: no DNS seeds for chain peers
	NoCheckpoints bool     // checkpoints=0: ignore the hard checkpoints (private chains)
	// MultiConnPerIP: multiconnperip, several swarm connections from one
	// IP (implied when bound to loopback, where devnet nodes share an IP).
	MultiConnPerIP bool
	BanTime        int // bantime: seconds a swarm peer sending a bad piece stays banned; 0: 86400

	// Warnings are things worth logging at startup: config file keys we do
	// not use (twister.conf carries many), a config file others can read.
	Warnings []string
}

// Values is settings as text: key -> values in the order given. Single
// valued settings have one element; list settings may have several.
type Values map[string][]string

type kind int

const (
	kindString kind = iota
	kindInt
	kindBool
	kindList
)

// setting describes one key/flag. apply converts its text into Config.
type setting struct {
	name  string
	kind  kind
	def   string // default as shown in --help
	usage string
	apply func(c *Config, vals []string) error
}

var errNoCredentialsInURL = errors.New("invalid URL, want http://user:password@host:port")

// settings is the single table behind the flags and the file keys.
func settings() []setting {
	return []setting{
		{"datadir", kindString, DefaultDataDir, "data directory (wallet, messages, config file)", func(c *Config, v []string) error {
			c.DataDir = v[0]
			return nil
		}},
		{"conf", kindString, ConfFileName, "config file; relative paths are inside the datadir", nil},
		{"rpcuser", kindString, "", "username for JSON-RPC connections", func(c *Config, v []string) error {
			c.RPCUser = v[0]
			return nil
		}},
		{"rpcpassword", kindString, "", "password for JSON-RPC connections (none: serve writes <datadir>/.cookie, clients read it)", func(c *Config, v []string) error {
			c.RPCPassword = v[0]
			return nil
		}},
		{"rpcport", kindInt, strconv.Itoa(DefaultRPCPort), "JSON-RPC port (listen for serve, connect for client commands)", func(c *Config, v []string) error {
			p, err := parsePort(v[0], false)
			c.RPCPort = p
			return err
		}},
		{"rpcallowip", kindList, "", "allow JSON-RPC from this address (repeatable, * wildcards); without it only loopback", func(c *Config, v []string) error {
			for _, ip := range v {
				if ip == "" {
					return errors.New("empty address")
				}
			}
			c.RPCAllowIP = v
			return nil
		}},
		{"rpcallowedorigin", kindList, "", "web origin (scheme://host[:port]) whose pages may call the RPC besides the server's own (repeatable)", func(c *Config, v []string) error {
			for _, o := range v {
				if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return fmt.Errorf("%q: want scheme://host[:port]", o)
				}
			}
			c.RPCAllowedOrigin = v
			return nil
		}},
		{"rpcallowedhost", kindList, "", "host name accepted in the HTTP Host header besides IP addresses and localhost (repeatable)", func(c *Config, v []string) error {
			for _, h := range v {
				if h == "" || strings.ContainsAny(h, "/:@ ") {
					return fmt.Errorf("%q: want a host name", h)
				}
			}
			c.RPCAllowedHost = v
			return nil
		}},
		{"rpcconnect", kindString, DefaultRPCConnect, "host of the daemon that client commands call", func(c *Config, v []string) error {
			host := strings.TrimSuffix(strings.TrimPrefix(v[0], "["), "]") // [::1] as ::1
			if host == "" {
				return errors.New("empty host")
			}
			c.RPCConnect = host
			return nil
		}},
		{"htmldir", kindString, "", "directory of twister-html (default: " + SystemHTMLDir + " if present, else <datadir>/html)", func(c *Config, v []string) error {
			c.HTMLDir = v[0]
			return nil
		}},
		{"debug", kindBool, "", "log at debug level", func(c *Config, v []string) error {
			b, err := parseBool(v[0], true)
			c.Debug = b
			return err
		}},
		{"upstream", kindString, "", "twisterd to forward other methods to, http://user:password@host:port", func(c *Config, v []string) error {
			if v[0] != "" {
				u, err := url.Parse(v[0])
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					// url.Parse errors quote the URL, credentials included.
					return errNoCredentialsInURL
				}
			}
			c.Upstream = v[0]
			return nil
		}},
		{"dhtport", kindInt, strconv.Itoa(DefaultDHTPort), "UDP DHT and TCP swarm port", func(c *Config, v []string) error {
			p, err := parsePort(v[0], true)
			c.DHTPort = p
			return err
		}},
		{"bind", kindString, "", "IP address the DHT and swarm listen on (default: all addresses)", func(c *Config, v []string) error {
			host := strings.TrimSuffix(strings.TrimPrefix(v[0], "["), "]")
			if host != "" && net.ParseIP(host) == nil {
				return fmt.Errorf("%q is not an IP address", v[0])
			}
			c.Bind = host
			return nil
		}},
		{"bootstrap", kindList, "", "DHT peer host:port to bootstrap from (repeatable)", applyBootstrap},
		{"addnode", kindList, "", "chain P2P peer host:port kept connected; also a DHT bootstrap address, as -bootstrap (repeatable)", func(c *Config, v []string) error {
			c.AddNode = append(c.AddNode, v...)
			return applyBootstrap(c, v)
		}},
		{"connect", kindList, "", "connect only to this chain P2P peer host:port (repeatable; -registry=chain)", func(c *Config, v []string) error {
			c.Connect = append(c.Connect, v...)
			return checkHostPorts(v)
		}},
		{"seednode", kindList, "", "chain P2P peer host:port to learn addresses from (repeatable)", func(c *Config, v []string) error {
			c.SeedNode = append(c.SeedNode, v...)
			return checkHostPorts(v)
		}},
		{"dnsseed", kindBool, "1", "find chain peers through DNS seeds when the address book is empty (0: never)", func(c *Config, v []string) error {
			b, err := parseBool(v[0], false)
			c.NoDNSSeed = !b
			return err
		}},
		{"checkpoints", kindBool, "1", "enforce the hard chain checkpoints (0 for a private chain, as twisterd)", func(c *Config, v []string) error {
			b, err := parseBool(v[0], false)
			c.NoCheckpoints = !b
			return err
		}},
		{"multiconnperip", kindBool, "", "allow several swarm connections from one IP (default: one per IP per swarm; implied with a loopback -bind)", func(c *Config, v []string) error {
			b, err := parseBool(v[0], true)
			c.MultiConnPerIP = b
			return err
		}},
		{"bantime", kindInt, strconv.Itoa(DefaultBanTime), "seconds a swarm peer that sent an invalid piece stays banned", func(c *Config, v []string) error {
			n, err := strconv.Atoi(v[0])
			if err != nil || n <= 0 {
				return fmt.Errorf("invalid number of seconds %q", v[0])
			}
			c.BanTime = n
			return nil
		}},
		{"registry", kindString, "", "\"chain\" (the default without -upstream: read the twister blockchain) or a local registry file of usernames and keys (devnet, tests); see docs/registry.md", func(c *Config, v []string) error {
			if v[0] == "chain" {
				c.Chain, c.Registry = true, ""
				return nil
			}
			c.Registry = v[0]
			return nil
		}},
	}
}

func applyBootstrap(c *Config, v []string) error {
	if err := checkHostPorts(v); err != nil {
		return err
	}
	c.Bootstrap = append(c.Bootstrap, v...)
	return nil
}

func checkHostPorts(v []string) error {
	for _, hp := range v {
		host, port, err := net.SplitHostPort(hp)
		if err != nil || host == "" {
			return fmt.Errorf("%q is not host:port", hp)
		}
		if _, err := parsePort(port, false); err != nil {
			return fmt.Errorf("%q: %w", hp, err)
		}
	}
	return nil
}

func parsePort(s string, zeroOK bool) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 0 || p > 65535 || (p == 0 && !zeroOK) {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return p, nil
}

// parseBool accepts bitcoind's forms (bare flag, 1/0) and the usual words.
// anyOn: any other non-empty text means true, as twisterd's -debug=<category>.
func parseBool(s string, anyOn bool) (bool, error) {
	switch strings.ToLower(s) {
	case "", "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	if anyOn {
		return true, nil
	}
	return false, fmt.Errorf("invalid boolean %q", s)
}

func lookup(name string) (setting, bool) {
	for _, s := range settings() {
		if s.name == name {
			return s, true
		}
	}
	return setting{}, false
}

// Resolve builds the Config from the command-line values: defaults, then the
// config file (in the datadir, or -conf), then the command line, which wins.
// For list settings a command-line list replaces the file's list.
// A missing default config file is fine; a missing -conf file is an error.
func Resolve(cmdline Values) (Config, error) {
	var c Config
	for name, vals := range cmdline {
		s, ok := lookup(name)
		if !ok {
			return Config{}, fmt.Errorf("unknown option -%s", name)
		}
		if len(vals) == 0 || (s.kind != kindList && len(vals) != 1) {
			return Config{}, fmt.Errorf("option -%s: want one value", name)
		}
	}

	dataDir := DefaultDataDir
	if v, ok := cmdline["datadir"]; ok {
		dataDir = v[0]
	}
	confPath, explicitConf := ConfFileName, false
	if v, ok := cmdline["conf"]; ok {
		confPath, explicitConf = v[0], true
	}

	var file Values
	absData, err := absDir(dataDir)
	if err != nil {
		return Config{}, err
	}
	confPath = expandHome(confPath)
	if !filepath.IsAbs(confPath) {
		confPath = filepath.Join(absData, confPath)
	}
	data, err := os.ReadFile(confPath)
	switch {
	case err == nil:
		c.ConfFile = confPath
		file, err = ParseFile(data)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", confPath, err)
		}
		if fi, serr := os.Stat(confPath); serr == nil && fi.Mode().Perm()&0o077 != 0 && len(file["rpcpassword"]) > 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s holds rpcpassword and is readable by others (mode %v); chmod 600 it", confPath, fi.Mode().Perm()))
		}
	case errors.Is(err, os.ErrNotExist) && !explicitConf:
		// No config file is fine, as for twisterd.
	default:
		return Config{}, fmt.Errorf("read config file: %w", err)
	}

	merged := Values{}
	var unknown []string
	for k, v := range file {
		if _, ok := lookup(k); !ok {
			unknown = append(unknown, k)
			continue
		}
		merged[k] = v
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s: ignoring key %q (not used by twgroupd)", confPath, k))
	}
	for k, v := range cmdline {
		merged[k] = v
	}
	// addnode and bootstrap feed one list: a command line giving either
	// replaces both file lists.
	if _, ok := cmdline["addnode"]; ok {
		if _, ok := cmdline["bootstrap"]; !ok {
			delete(merged, "bootstrap")
		}
	}
	if _, ok := cmdline["bootstrap"]; ok {
		if _, ok := cmdline["addnode"]; !ok {
			delete(merged, "addnode")
		}
	}

	c.DataDir = absData
	c.RPCPort = DefaultRPCPort
	c.RPCConnect = DefaultRPCConnect
	c.DHTPort = DefaultDHTPort
	for _, s := range settings() {
		vals, ok := merged[s.name]
		if !ok || s.apply == nil {
			continue
		}
		if err := s.apply(&c, vals); err != nil {
			where := "-" + s.name
			if _, fromCmd := cmdline[s.name]; !fromCmd {
				where = confPath + ": " + s.name
			}
			return Config{}, fmt.Errorf("%s: %w", where, err)
		}
	}
	// The file may name another datadir (only the command line's decides
	// where the file is looked up).
	if c.DataDir, err = absDir(c.DataDir); err != nil {
		return Config{}, err
	}
	// Paths are fixed now, so a daemon that later changes directory (or a
	// devnet that starts it elsewhere) still finds them.
	for _, p := range []*string{&c.Registry, &c.HTMLDir} {
		if *p == "" {
			continue
		}
		if *p, err = filepath.Abs(expandHome(*p)); err != nil {
			return Config{}, fmt.Errorf("path %q: %w", *p, err)
		}
	}
	return c, nil
}

// ParseFile parses twgroupd.conf text: one key=value per line, blank lines
// and lines starting with '#' ignored, spaces around key and value trimmed.
// A '#' after the value is part of the value (passwords may contain it).
// List keys may repeat; repeating a single-valued key is an error. Unknown
// keys are returned too (Resolve warns about them). Errors name the line,
// never its content, which may be a password.
func ParseFile(data []byte) (Values, error) {
	vals := Values{}
	firstLine := map[string]int{}
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			return nil, fmt.Errorf("line %d: sections are not supported", n)
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: expected key=value", n)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !validKey(key) {
			return nil, fmt.Errorf("line %d: invalid key (want lowercase letters, digits, '_')", n)
		}
		switch key {
		case "conf":
			return nil, fmt.Errorf("line %d: conf cannot be set inside a config file", n)
		}
		if s, known := lookup(key); known && s.kind != kindList {
			if prev, dup := firstLine[key]; dup {
				return nil, fmt.Errorf("line %d: %s already set on line %d", n, key, prev)
			}
		}
		if _, seen := firstLine[key]; !seen {
			firstLine[key] = n
		}
		vals[key] = append(vals[key], value)
	}
	return vals, nil
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

func absDir(p string) (string, error) {
	if p == "" {
		return "", errors.New("-datadir: empty path")
	}
	p = expandHome(p)
	if strings.HasPrefix(p, "~") {
		return "", fmt.Errorf("-datadir: cannot expand %q (no home directory)", p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("-datadir: %w", err)
	}
	return abs, nil
}

// ResolvedHTMLDir is the directory static files are served from, chosen as
// twisterd does: -htmldir, else SystemHTMLDir if it exists, else
// <datadir>/html.
func (c Config) ResolvedHTMLDir() string {
	if c.HTMLDir != "" {
		return c.HTMLDir
	}
	if fi, err := os.Stat(SystemHTMLDir); err == nil && fi.IsDir() {
		return SystemHTMLDir
	}
	return filepath.Join(c.DataDir, "html")
}

// LogValue renders the Config for logs without secrets: the password is
// reduced to whether it is set and the upstream URL loses its credentials.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("datadir", c.DataDir),
		slog.String("conf", c.ConfFile),
		slog.String("rpcuser", c.RPCUser),
		slog.Bool("rpcpassword_set", c.RPCPassword != ""),
		slog.Int("rpcport", c.RPCPort),
		slog.Any("rpcallowip", c.RPCAllowIP),
		slog.Any("rpcallowedorigin", c.RPCAllowedOrigin),
		slog.Any("rpcallowedhost", c.RPCAllowedHost),
		slog.String("htmldir", c.ResolvedHTMLDir()),
		slog.Bool("debug", c.Debug),
		slog.String("upstream", RedactURL(c.Upstream)),
		slog.Int("dhtport", c.DHTPort),
		slog.String("bind", c.Bind),
		slog.Any("bootstrap", c.Bootstrap),
		slog.String("registry", c.Registry),
		slog.Bool("multiconnperip", c.MultiConnPerIP),
		slog.Int("bantime", c.BanTime),
	)
}

// RedactURL drops the user information of a URL, for logs and errors.
func RedactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	u.User = nil
	return u.String()
}
