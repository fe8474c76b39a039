package config

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func writeConf(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, ConfFileName)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// parseArgs runs a real pflag parse, as the CLI does after normalising.
func parseArgs(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return Load(fs)
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := parseArgs(t, "--datadir="+dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != dir || c.ConfFile != "" || c.RPCPort != 28332 || c.DHTPort != 29333 ||
		c.RPCConnect != "127.0.0.1" || c.Debug || c.RPCUser != "" || len(c.Warnings) != 0 {
		t.Fatalf("defaults: %+v", c)
	}
	if got := c.ResolvedHTMLDir(); got != SystemHTMLDir && got != filepath.Join(dir, "html") {
		t.Fatalf("html dir %q", got)
	}
}

func TestDefaultDataDirIsHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	c, err := parseArgs(t)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(home, ".twgroupd"); c.DataDir != want {
		t.Fatalf("datadir %q, want %q", c.DataDir, want)
	}
}

func TestFileAndPrecedence(t *testing.T) {
	dir := t.TempDir()
	writeConf(t, dir, `# twgroupd test config
rpcuser = alice
rpcpassword=p#ss=word with spaces
  # indented comment

rpcport=40001
rpcallowip=10.0.0.*
rpcallowip=192.168.1.2
addnode=127.0.0.1:29334
bootstrap=[::1]:29335
debug=1
upstream=http://u:secret@127.0.0.1:28332
registry=reg.json
rpcthreads=4
`)
	c, err := parseArgs(t, "--datadir="+dir, "--rpcport=40002", "--rpcallowip=127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if c.RPCUser != "alice" || c.RPCPassword != "p#ss=word with spaces" {
		t.Fatalf("credentials from file: %q %q", c.RPCUser, c.RPCPassword)
	}
	if c.RPCPort != 40002 {
		t.Fatalf("command line must win: rpcport %d", c.RPCPort)
	}
	if !reflect.DeepEqual(c.RPCAllowIP, []string{"127.0.0.1"}) {
		t.Fatalf("command-line list replaces the file's: %q", c.RPCAllowIP)
	}
	if !reflect.DeepEqual(c.Bootstrap, []string{"[::1]:29335", "127.0.0.1:29334"}) {
		t.Fatalf("bootstrap %q", c.Bootstrap)
	}
	if !c.Debug || c.Upstream != "http://u:secret@127.0.0.1:28332" {
		t.Fatalf("debug/upstream %+v", c)
	}
	wd, _ := os.Getwd()
	if c.Registry != filepath.Join(wd, "reg.json") {
		t.Fatalf("registry %q", c.Registry)
	}
	if c.ConfFile != filepath.Join(dir, ConfFileName) {
		t.Fatalf("conf %q", c.ConfFile)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], `"rpcthreads"`) {
		t.Fatalf("warnings %q", c.Warnings)
	}

	// Without command-line overrides the file's lists are used whole.
	c, err = parseArgs(t, "--datadir="+dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.RPCPort != 40001 || !reflect.DeepEqual(c.RPCAllowIP, []string{"10.0.0.*", "192.168.1.2"}) {
		t.Fatalf("file values: %d %q", c.RPCPort, c.RPCAllowIP)
	}
	// -debug=0 on the command line turns off the file's debug=1.
	c, err = parseArgs(t, "--datadir="+dir, "--debug=0")
	if err != nil || c.Debug {
		t.Fatalf("debug=0: %v %v", c.Debug, err)
	}
}

func TestExplicitConf(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(t.TempDir(), "x.conf")
	if err := os.WriteFile(other, []byte("rpcuser=bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseArgs(t, "--datadir="+dir, "--conf="+other)
	if err != nil || c.RPCUser != "bob" || c.ConfFile != other {
		t.Fatalf("absolute -conf: %+v %v", c, err)
	}
	// A relative -conf is inside the datadir, as twisterd's GetConfigFile.
	writeConf(t, dir, "rpcuser=carol\n")
	c, err = parseArgs(t, "--datadir="+dir, "--conf="+ConfFileName)
	if err != nil || c.RPCUser != "carol" {
		t.Fatalf("relative -conf: %+v %v", c, err)
	}
	_, err = parseArgs(t, "--datadir="+dir, "--conf=missing.conf")
	if err == nil || !strings.Contains(err.Error(), "missing.conf") {
		t.Fatalf("missing explicit conf: %v", err)
	}
}

func TestBadFiles(t *testing.T) {
	cases := []struct{ text, want string }{
		{"rpcuser=a\nrpcpassword\n", "line 2: expected key=value"},
		{"[main]\n", "line 1: sections are not supported"},
		{"RPCUSER=x\n", "line 1: invalid key"},
		{"=x\n", "line 1: invalid key"},
		{"-rpcuser=x\n", "line 1: invalid key"},
		{"rpcport=1\n\nrpcport=2\n", "line 3: rpcport already set on line 1"},
		{"conf=/etc/x\n", "line 1: conf cannot be set"},
		{"rpcport=abc\n", "rpcport: invalid port \"abc\""},
		{"rpcport=70000\n", "invalid port"},
		{"dhtport=-1\n", "invalid port"},
		{"addnode=nohostport\n", "is not host:port"},
		{"bootstrap=host:0\n", "invalid port"},
		{"upstream=ftp://u:topsecret@h:1\n", "invalid URL"},
		{"upstream=http://u:topsecret@[::1\n", "invalid URL"},
		{"rpcconnect=\n", "empty host"},
		{"bind=localhost\n", "is not an IP address"},
	}
	for _, tc := range cases {
		dir := t.TempDir()
		writeConf(t, dir, tc.text)
		_, err := parseArgs(t, "--datadir="+dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.text, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("%q: error leaks credentials: %v", tc.text, err)
		}
		if !strings.Contains(err.Error(), ConfFileName) {
			t.Errorf("%q: error does not name the file: %v", tc.text, err)
		}
	}
}

func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	_, err := parseArgs(t, "--datadir="+dir, "--rpcport=x")
	if err == nil || !strings.Contains(err.Error(), `-rpcport: invalid port "x"`) {
		t.Fatalf("bad flag: %v", err)
	}
	if _, err := Resolve(Values{"nosuch": {"1"}}); err == nil {
		t.Fatal("unknown option accepted")
	}
	if _, err := Resolve(Values{"rpcport": {"1", "2"}}); err == nil {
		t.Fatal("two values for a single setting accepted")
	}
}

func TestDebugCategories(t *testing.T) {
	for arg, want := range map[string]bool{"--debug": true, "--debug=net": true, "--debug=0": false, "--debug=false": false, "--debug=1": true} {
		c, err := parseArgs(t, "--datadir="+t.TempDir(), arg)
		if err != nil || c.Debug != want {
			t.Errorf("%s: debug %v err %v", arg, c.Debug, err)
		}
	}
}

func TestWorldReadablePasswordWarns(t *testing.T) {
	dir := t.TempDir()
	p := writeConf(t, dir, "rpcpassword=x\n")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := parseArgs(t, "--datadir="+dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "chmod 600") {
		t.Fatalf("warnings %q", c.Warnings)
	}
}

func TestLogValueHidesSecrets(t *testing.T) {
	c := Config{RPCUser: "u", RPCPassword: "hunter2hunter2", Upstream: "http://up:topsecret@127.0.0.1:28332"}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "cfg", c)
	out := buf.String()
	if strings.Contains(out, "hunter2") || strings.Contains(out, "topsecret") {
		t.Fatalf("secret in log: %s", out)
	}
	if !strings.Contains(out, "rpcpassword_set=true") || !strings.Contains(out, "127.0.0.1:28332") {
		t.Fatalf("log lacks fields: %s", out)
	}
}

func TestTakesValue(t *testing.T) {
	if !TakesValue("datadir") || !TakesValue("rpcallowip") || TakesValue("debug") || TakesValue("nosuch") {
		t.Fatal("TakesValue")
	}
}

func FuzzParseFile(f *testing.F) {
	f.Add([]byte("rpcuser=a\nrpcpassword=b\n# c\nrpcallowip=1\nrpcallowip=2\n"))
	f.Add([]byte("[x]\n=\n\r\n"))
	f.Add([]byte("rpcport=1\nrpcport=2"))
	f.Fuzz(func(t *testing.T, data []byte) {
		vals, err := ParseFile(data)
		if err != nil {
			return
		}
		for k, v := range vals {
			if !validKey(k) || len(v) == 0 {
				t.Fatalf("bad entry %q=%q", k, v)
			}
		}
	})
}

// The example files in testdata/cli: ours, and a twister.conf whose shared
// keys are read and whose other keys are reported, not fatal.
func TestExampleFiles(t *testing.T) {
	load := func(name string) Config {
		t.Helper()
		path, err := filepath.Abs(filepath.Join("..", "..", "testdata", "cli", name))
		if err != nil {
			t.Fatal(err)
		}
		c, err := parseArgs(t, "--datadir="+t.TempDir(), "--conf="+path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return c
	}
	c := load("twgroupd.conf")
	if c.RPCUser != "twister" || c.RPCPort != 28332 || c.DHTPort != 29333 || len(c.RPCAllowIP) != 2 ||
		!reflect.DeepEqual(c.Bootstrap, []string{"seed3.twister.net.co:29333", "127.0.0.1:29334"}) ||
		c.Upstream == "" || c.Debug {
		t.Fatalf("twgroupd.conf: %+v", c)
	}
	for _, w := range c.Warnings { // files from git may be 0644: only that warning is fine
		if !strings.Contains(w, "chmod 600") {
			t.Fatalf("twgroupd.conf warning %q", w)
		}
	}
	c = load("twister.conf")
	if c.RPCUser != "user" || c.RPCPassword != "pwd-long-enough-1234" || !c.Debug || c.RPCPort != 28332 {
		t.Fatalf("twister.conf: %+v", c)
	}
	var ignored []string
	for _, w := range c.Warnings {
		if i := strings.Index(w, `ignoring key "`); i >= 0 {
			ignored = append(ignored, strings.SplitN(w[i+len(`ignoring key "`):], `"`, 2)[0])
		}
	}
	if want := []string{"genproclimit", "port", "printtoconsole", "rpcthreads"}; !reflect.DeepEqual(ignored, want) {
		t.Fatalf("ignored %q, want %q (warnings %q)", ignored, want, c.Warnings)
	}
}

func TestBind(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1": "127.0.0.1", "[::1]": "::1", "::": "::"} {
		c, err := parseArgs(t, "--datadir="+t.TempDir(), "--bind="+in)
		if err != nil || c.Bind != want {
			t.Errorf("bind %q: %q %v", in, c.Bind, err)
		}
	}
	c, err := parseArgs(t, "--datadir="+t.TempDir(), "--rpcconnect=[::1]")
	if err != nil || c.RPCConnect != "::1" {
		t.Fatalf("rpcconnect %q %v", c.RPCConnect, err)
	}
	c, err = parseArgs(t, "--datadir="+t.TempDir())
	if err != nil || c.Bind != "" {
		t.Fatalf("default bind %q %v", c.Bind, err)
	}
}

func TestAllowedOriginAndHost(t *testing.T) {
	dir := t.TempDir()
	c, err := parseArgs(t, "--datadir="+dir, "--rpcallowedorigin=https://tw.example.org", "--rpcallowedorigin=http://10.0.0.2:8080", "--rpcallowedhost=mynode.lan")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.RPCAllowedOrigin) != 2 || c.RPCAllowedOrigin[1] != "http://10.0.0.2:8080" || len(c.RPCAllowedHost) != 1 || c.RPCAllowedHost[0] != "mynode.lan" {
		t.Fatalf("%+v", c)
	}
	for _, bad := range [][]string{{"--rpcallowedorigin=tw.example.org"}, {"--rpcallowedorigin=ftp://x"}, {"--rpcallowedhost=a:80"}, {"--rpcallowedhost="}} {
		if _, err := parseArgs(t, append([]string{"--datadir=" + dir}, bad...)...); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCookieFile(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := ReadCookie(dir); err != ErrNoCookie {
		t.Fatalf("no cookie: %v", err)
	}
	user, pass, err := WriteCookie(dir)
	if err != nil || user != CookieUser || len(pass) != 64 {
		t.Fatalf("%q %q %v", user, pass, err)
	}
	fi, _ := os.Stat(CookiePath(dir))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	c := Config{DataDir: dir}
	if u, p, err := c.RPCCredentials(); err != nil || u != CookieUser || p != pass {
		t.Errorf("credentials from the cookie: %q %q %v", u, p, err)
	}
	c.RPCUser, c.RPCPassword = "me", "set"
	if u, p, _ := c.RPCCredentials(); u != "me" || p != "set" {
		t.Errorf("a set password must win: %q %q", u, p)
	}
	// A newer daemon's cookie is not removed by an older one's stop.
	_, newer, _ := WriteCookie(dir)
	if err := RemoveCookie(dir, pass); err != nil {
		t.Fatal(err)
	}
	if _, p, err := ReadCookie(dir); err != nil || p != newer {
		t.Errorf("newer cookie removed: %v", err)
	}
	if err := RemoveCookie(dir, newer); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(CookiePath(dir)); !os.IsNotExist(err) {
		t.Errorf("cookie not removed: %v", err)
	}
}

// Chain settings: registry=chain, the P2P peer lists, dnsseed and
// checkpoints as twisterd spells them.
func TestChainSettings(t *testing.T) {
	c, err := parseArgs(t, "--datadir="+t.TempDir(), "--registry=chain", "--connect=127.0.0.1:30005",
		"--seednode=127.0.0.2:28333", "--addnode=127.0.0.3:28333", "--dnsseed=0", "--checkpoints=0")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Chain || c.Registry != "" || len(c.Connect) != 1 || len(c.SeedNode) != 1 || len(c.AddNode) != 1 ||
		len(c.Bootstrap) != 1 || !c.NoDNSSeed || !c.NoCheckpoints {
		t.Fatalf("chain settings: %+v", c)
	}
	c, err = parseArgs(t, "--datadir="+t.TempDir())
	if err != nil || c.Chain || c.NoDNSSeed || c.NoCheckpoints {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	if _, err := parseArgs(t, "--datadir="+t.TempDir(), "--connect=nohostport"); err == nil {
		t.Fatal("bad -connect accepted")
	}
}
