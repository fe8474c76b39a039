package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeRPC is a JSON-RPC server on 127.0.0.1 that records each request body
// and answers with a canned status and body.
type fakeRPC struct {
	srv *httptest.Server

	mu       sync.Mutex
	bodies   []string
	auths    []string
	status   int
	reply    string
	user, pw string
}

func newFakeRPC(t *testing.T) *fakeRPC {
	f := &fakeRPC{status: 200, reply: `{"result":null,"error":null,"id":1}`, user: "u", pw: "p"}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u, p, ok := r.BasicAuth()
		f.mu.Lock()
		defer f.mu.Unlock()
		f.bodies = append(f.bodies, string(body))
		f.auths = append(f.auths, u+":"+p)
		if r.Method != http.MethodPost || r.URL.Path != "/" || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if !ok || u != f.user || p != f.pw {
			w.Header().Set("WWW-Authenticate", `Basic realm="jsonrpc"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.status)
		io.WriteString(w, f.reply)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRPC) answer(status int, reply string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.reply = status, reply
}

func (f *fakeRPC) port() string {
	_, port, _ := net.SplitHostPort(f.srv.Listener.Addr().String())
	return port
}

func (f *fakeRPC) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies...)
}

// call runs a client command against f with bitcoind-style flags.
func (f *fakeRPC) call(t *testing.T, args ...string) result {
	t.Helper()
	flags := []string{"-datadir=" + t.TempDir(), "-rpcconnect=127.0.0.1", "-rpcport=" + f.port(), "-rpcuser=u", "-rpcpassword=p"}
	return runBin(t, "", append(flags, args...)...)
}

func TestClientConversions(t *testing.T) {
	f := newFakeRPC(t)
	cases := []struct {
		args []string
		body string
	}{
		{[]string{"newgroupinvite", "alice", "5", "*abcdefgh", `["bob"]`},
			`{"method":"newgroupinvite","params":["alice",5,"*abcdefgh",["bob"]],"id":1}`},
		{[]string{"creategroup", "my group"},
			`{"method":"creategroup","params":["my group"],"id":1}`},
		{[]string{"newdirectmsg", "alice", "2", "bob", "héllo \"x\"\n", "true"},
			`{"method":"newdirectmsg","params":["alice",2,"bob","héllo \"x\"\n",true],"id":1}`},
		{[]string{"newdirectmsgto", "alice", "2", "*grp", "1"},
			`{"method":"newdirectmsgto","params":["alice",2,"*grp","1"],"id":1}`},
		{[]string{"newdirectmsg", "alice", "auto", "bob", "hi"},
			`{"method":"newdirectmsg","params":["alice",null,"bob","hi"],"id":1}`},
		{[]string{"newgroupinvite", "alice", "auto", "*grp", `["bob"]`},
			`{"method":"newgroupinvite","params":["alice",null,"*grp",["bob"]],"id":1}`},
		{[]string{"newgroupdescription", "alice", "auto", "*grp", "d"},
			`{"method":"newgroupdescription","params":["alice",null,"*grp","d"],"id":1}`},
		{[]string{"newgroupdescription", "alice", "-1", "*grp", "d"},
			`{"method":"newgroupdescription","params":["alice",-1,"*grp","d"],"id":1}`},
		{[]string{"getdirectmsgs", "alice", "10", `[{"username":"bob","max_id":5},{"since_id":-1,"username":"*g"}]`},
			`{"method":"getdirectmsgs","params":["alice",10,[{"username":"bob","max_id":5},{"since_id":-1,"username":"*g"}]],"id":1}`},
		// Words after the method are parameters even when they look like flags.
		{[]string{"getdirectmsgs", "alice", "-1", "[]"},
			`{"method":"getdirectmsgs","params":["alice",-1,[]],"id":1}`},
		{[]string{"listgroups", "alice", "true"},
			`{"method":"listgroups","params":["alice",true],"id":1}`},
		{[]string{"listgroups"}, `{"method":"listgroups","params":[],"id":1}`},
		{[]string{"createwalletuser", "carol", "false"},
			`{"method":"createwalletuser","params":["carol",false],"id":1}`},
		{[]string{"importprivkey", "Kx", "bob", "false", "true"},
			`{"method":"importprivkey","params":["Kx","bob",false,true],"id":1}`},
		{[]string{"follow", "alice", `["alice","bob"]`},
			`{"method":"follow","params":["alice",["alice","bob"]],"id":1}`},
		{[]string{"unfollow", "alice", `["bob"]`},
			`{"method":"unfollow","params":["alice",["bob"]],"id":1}`},
		{[]string{"getlasthave", "alice", `["bob"]`},
			`{"method":"getlasthave","params":["alice",["bob"]],"id":1}`},
		{[]string{"getpiecemaxseen", "alice", "7"},
			`{"method":"getpiecemaxseen","params":["alice",7],"id":1}`},
		{[]string{"getnumpieces", "alice"},
			`{"method":"getnumpieces","params":["alice"],"id":1}`},
		{[]string{"getposts", "20", `[{"username":"bob"}]`, "3", "2"},
			`{"method":"getposts","params":[20,[{"username":"bob"}],3,2],"id":1}`},
		{[]string{"dhtget", "alice", "profile", "s", "3000", "4000", "2"},
			`{"method":"dhtget","params":["alice","profile","s",3000,4000,2],"id":1}`},
		// dhtput's value is any JSON value; reals print with 8 decimals.
		{[]string{"dhtput", "alice", "profile", "s", `{"fullname":"Alice","n":1.5}`, "alice", "1"},
			`{"method":"dhtput","params":["alice","profile","s",{"fullname":"Alice","n":1.50000000},"alice",1],"id":1}`},
		{[]string{"dhtput", "alice", "status", "s", `"hi"`, "alice", "2"},
			`{"method":"dhtput","params":["alice","status","s","hi","alice",2],"id":1}`},
		// ConvertTo<int> reinterprets a JSON string once more.
		{[]string{"newgroupdescription", "alice", `"6"`, "*g", "new desc"},
			`{"method":"newgroupdescription","params":["alice",6,"*g","new desc"],"id":1}`},
		// \u escapes keep the low byte only, as json_spirit's reader.
		{[]string{"follow", "alice", `["\u00e9\u0041"]`},
			"{\"method\":\"follow\",\"params\":[\"alice\",[\"\xe9A\"]],\"id\":1}"},
		{[]string{"stop"}, `{"method":"stop","params":[],"id":1}`},
		{[]string{"stop", "true"}, `{"method":"stop","params":[true],"id":1}`},
		{[]string{"help", "newdirectmsg"}, `{"method":"help","params":["newdirectmsg"],"id":1}`},
		{[]string{"help"}, `{"method":"help","params":[],"id":1}`},
		{[]string{"getinfo"}, `{"method":"getinfo","params":[],"id":1}`},
		{[]string{"sendnewusertransaction", "alice"}, `{"method":"sendnewusertransaction","params":["alice"],"id":1}`},
		// Unknown methods pass through with string parameters.
		{[]string{"getblockcount"}, `{"method":"getblockcount","params":[],"id":1}`},
		{[]string{"frobnicate", "1", "[2]", "-x"}, `{"method":"frobnicate","params":["1","[2]","-x"],"id":1}`},
	}
	for _, tc := range cases {
		before := len(f.requests())
		r := f.call(t, tc.args...)
		if r.status != 0 || r.stdout != "" || r.stderr != "" {
			t.Errorf("%q: status %d stdout %q stderr %q", tc.args, r.status, r.stdout, r.stderr)
			continue
		}
		reqs := f.requests()
		if len(reqs) != before+1 {
			t.Errorf("%q: %d requests", tc.args, len(reqs)-before)
			continue
		}
		if got := reqs[len(reqs)-1]; got != tc.body+"\n" {
			t.Errorf("%q:\n got  %s\n want %s", tc.args, got, tc.body)
		}
	}
}

func TestClientConversionErrors(t *testing.T) {
	f := newFakeRPC(t)
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"newdirectmsg", "alice", "x", "bob", "hi"}, "error: Error parsing JSON:x\n"},
		{[]string{"newdirectmsg", "alice", "1.5", "bob", "hi"}, "error: value is type real, expected int\n"},
		{[]string{"newdirectmsg", "alice", "2", "bob", "hi", "1"}, "error: value is type int, expected bool\n"},
		{[]string{"newdirectmsg", "alice", `"abc"`, "bob", "hi"}, "error: Error parsing JSON:abc\n"},
		{[]string{"newgroupinvite", "alice", "5", "*g", "bob"}, "error: Error parsing JSON:bob\n"},
		{[]string{"newgroupinvite", "alice", "5", "*g", `{"a":1}`}, "error: value is type obj, expected array\n"},
		{[]string{"getdirectmsgs", "alice", "5x", "[]"}, "error: Error parsing JSON:5x\n"},
		{[]string{"dhtput", "alice", "profile", "s", "notjson", "alice", "1"}, "error: Error parsing JSON:notjson\n"},
	}
	for _, tc := range cases {
		r := f.call(t, tc.args...)
		if r.status != 87 || r.stderr != tc.msg || r.stdout != "" {
			t.Errorf("%q: status %d stderr %q stdout %q, want 87 %q", tc.args, r.status, r.stderr, r.stdout, tc.msg)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Fatalf("%d requests sent for bad parameters", n)
	}
}

func TestClientOutput(t *testing.T) {
	f := newFakeRPC(t)
	cases := []struct {
		name, reply    string
		status         int // HTTP
		stdout, stderr string
		exit           int
	}{
		{"null prints nothing", `{"result":null,"error":null,"id":1}`, 200, "", "", 0},
		{"string raw", `{"result":"L5k7ajAiJx \"q\" tab\there\nline2 é","error":null,"id":1}`, 200,
			"L5k7ajAiJx \"q\" tab\there\nline2 é\n", "", 0},
		{"invalid utf-8 kept", "{\"result\":\"\xff\xfe\",\"error\":null,\"id\":1}", 200, "\xff\xfe\n", "", 0},
		{"empty string prints nothing", `{"result":"","error":null,"id":1}`, 200, "", "", 0},
		{"int", `{"result":12,"error":null,"id":1}`, 200, "12\n", "", 0},
		{"bool", `{"result":true,"error":null,"id":1}`, 200, "true\n", "", 0},
		{"array", `{"result":["alice","bob"],"error":null,"id":1}`, 200, "[\n    \"alice\",\n    \"bob\"\n]\n", "", 0},
		{"empty array", `{"result":[],"error":null,"id":1}`, 200, "[\n]\n", "", 0},
		{"empty object", `{"result":{},"error":null,"id":1}`, 200, "{\n}\n", "", 0},
		{"object pretty", `{"result":{"bob":[{"id":0,"text":"Hi\u0001","fromMe":true,"k":-1}],"e":[],"difficulty":0.00000381},"error":null,"id":1}`, 200,
			"{\n    \"bob\" : [\n        {\n            \"id\" : 0,\n            \"text\" : \"Hi\\u0001\",\n            \"fromMe\" : true,\n            \"k\" : -1\n        }\n    ],\n    \"e\" : [\n    ],\n    \"difficulty\" : 0.00000381\n}\n", "", 0},
		{"error -5", `{"result":null,"error":{"code":-5,"message":"Username not found"},"id":1}`, 500,
			"", "error: {\"code\":-5,\"message\":\"Username not found\"}\n", 5},
		{"error -32601 exits with its low byte", `{"result":null,"error":{"code":-32601,"message":"Method not found"},"id":1}`, 404,
			"", "error: {\"code\":-32601,\"message\":\"Method not found\"}\n", 32601 & 0xff},
		{"error -1 multi-line message", `{"result":null,"error":{"code":-1,"message":"newdirectmsg <from> <k> <to> <msg> [copy_self=false]\n"},"id":1}`, 500,
			"", "error: {\"code\":-1,\"message\":\"newdirectmsg <from> <k> <to> <msg> [copy_self=false]\\n\"}\n", 1},
		{"error -32600 on 400", `{"result":null,"error":{"code":-32600,"message":"Params must be an array"},"id":1}`, 400,
			"", "error: {\"code\":-32600,\"message\":\"Params must be an array\"}\n", 32600 & 0xff},
		{"error not an object", `{"result":null,"error":"boom","id":1}`, 500, "", "error: value is type str, expected obj\n", 87},
		{"error without code", `{"result":null,"error":{"message":"x"},"id":1}`, 500, "", "error: value is type null, expected int\n", 87},
		{"forbidden status", `nope`, 403, "", "error: server returned HTTP error 403\n", 87},
		{"unparsable reply", `{"result":`, 200, "", "error: couldn't parse reply from server\n", 87},
		{"empty reply", ``, 200, "", "error: no response from server\n", 87},
		{"reply not an object", `[1]`, 200, "", "error: value is type array, expected obj\n", 87},
		{"empty reply object", `{}`, 200, "", "error: expected reply to have result, error and id properties\n", 87},
	}
	for _, tc := range cases {
		f.answer(tc.status, tc.reply)
		r := f.call(t, "getinfo")
		if r.stdout != tc.stdout || r.stderr != tc.stderr || r.status != tc.exit {
			t.Errorf("%s:\n stdout %q\n stderr %q\n exit %d\nwant\n stdout %q\n stderr %q\n exit %d",
				tc.name, r.stdout, r.stderr, r.status, tc.stdout, tc.stderr, tc.exit)
		}
	}
}

func TestClientAuthAndConnect(t *testing.T) {
	f := newFakeRPC(t)
	r := runBin(t, "", "-datadir="+t.TempDir(), "-rpcport="+f.port(), "-rpcuser=u", "-rpcpassword=wrong", "getinfo")
	if r.status != 87 || r.stderr != "error: incorrect rpcuser or rpcpassword (authorization failed)\n" {
		t.Fatalf("wrong password: %+v", r)
	}

	dir := t.TempDir()
	r = runBin(t, "", "-datadir="+dir, "-rpcport="+f.port(), "getinfo")
	want := "error: You must set rpcpassword=<password> in the configuration file:\n" +
		filepath.Join(dir, "twgroupd.conf") + "\nIf the file does not exist, create it with owner-readable-only file permissions.\n" +
		"Or start `twgroupd serve` without rpcpassword: it writes " + filepath.Join(dir, ".cookie") +
		", which client commands read (give the same -datadir).\n"
	if r.status != 87 || r.stderr != want {
		t.Fatalf("no credentials: %+v", r)
	}

	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	r = runBin(t, "", "-datadir="+dir, "-rpcport="+port, "-rpcuser=u", "-rpcpassword=p", "getinfo")
	if r.status != 87 || r.stderr != "error: couldn't connect to server\n" {
		t.Fatalf("refused: %+v", r)
	}
}

// The client reads rpcuser/rpcpassword/rpcport from twgroupd.conf in the
// datadir; flags win over it and may be written with one dash or two.
func TestClientConfigFileAndFlagStyles(t *testing.T) {
	f := newFakeRPC(t)
	f.answer(200, `{"result":"ok","error":null,"id":1}`)
	dir := t.TempDir()
	conf := "# test\nrpcuser=u\nrpcpassword=p\nrpcport=" + f.port() + "\nrpcconnect=127.0.0.1\n"
	if err := os.WriteFile(filepath.Join(dir, "twgroupd.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-datadir=" + dir, "getinfo"},
		{"--datadir=" + dir, "getinfo"},
		{"--datadir", dir, "getinfo"},
		{"-datadir", dir, "-rpcuser=u", "getinfo"},
	} {
		r := runBin(t, "", args...)
		if r.status != 0 || r.stdout != "ok\n" {
			t.Errorf("%q: %+v", args, r)
		}
	}
	// The command line wins over the file.
	r := runBin(t, "", "-datadir="+dir, "-rpcpassword=bad", "getinfo")
	if r.status != 87 || !strings.Contains(r.stderr, "authorization failed") {
		t.Fatalf("flag must override file: %+v", r)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, a := range f.auths[:4] {
		if a != "u:p" {
			t.Errorf("request %d auth %q", i, a)
		}
	}
}

func TestClientBadConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "twgroupd.conf"), []byte("rpcuser=u\nrpcpassword hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, "", "-datadir="+dir, "getinfo")
	if r.status != 1 || !strings.Contains(r.stderr, "twgroupd.conf: line 2: expected key=value") || strings.Contains(r.stderr, "hunter2") {
		t.Fatalf("bad config: %+v", r)
	}
	r = runBin(t, "", "-datadir="+t.TempDir(), "-nosuchflag=1", "getinfo")
	if r.status != 1 || !strings.Contains(r.stderr, "unknown flag: --nosuchflag") {
		t.Fatalf("unknown flag: %+v", r)
	}
}

func TestMethodHelpIsLocal(t *testing.T) {
	f := newFakeRPC(t)
	for _, h := range []string{"-h", "--help"} {
		r := f.call(t, "newgroupinvite", h)
		if r.status != 0 || !strings.Contains(r.stdout, "newgroupinvite <username> <k> <groupalias>") {
			t.Errorf("%s: %+v", h, r)
		}
	}
	r := runBin(t, "", "-?")
	if r.status != 0 || !strings.Contains(r.stdout, "JSON-RPC client commands") {
		t.Errorf("-?: %+v", r)
	}
	if n := len(f.requests()); n != 0 {
		t.Fatalf("help sent %d requests", n)
	}
}
