package abuse

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/internal/config"
	"github.com/twgroupd/twgroupd/internal/node"
	"github.com/twgroupd/twgroupd/internal/registry"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/internal/upstream"
)

// runningNode is a whole twgroupd node in this process until stop.
type runningNode struct {
	cfg  config.Config
	rpc  *upstream.Client
	stop func()
}

func startNode(t *testing.T, cfg config.Config) *runningNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.Open(ctx, cfg, quiet())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	c, err := upstream.New("http://user:a-long-enough-test-password@127.0.0.1:"+strconv.Itoa(cfg.RPCPort)+"/", upstream.WithTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	r := &runningNode{cfg: cfg, rpc: c}
	var stopped bool
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		if err := n.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	t.Cleanup(r.stop)
	return r
}

// A real member's member list naming unregistered users and more
// registered ones than the cap, injected on the victim as that member's
// piece: no unregistered user is followed, registered ones up to
// dm.MaxGroupFollows for the group, before and after a restart (issue #11
// item 5; `make abuse` runs 100 unregistered names).
func TestMemberList(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	regPath := filepath.Join(dir, "registry.txt")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := config.Config{DataDir: filepath.Join(dir, "victim"), RPCUser: "user", RPCPassword: "a-long-enough-test-password",
		RPCPort: port, Bind: "127.0.0.1", Registry: regPath}
	v := startNode(t, cfg)
	for _, m := range []string{"createwalletuser", "sendnewusertransaction"} {
		if _, err := v.rpc.Call(ctx, m, "alice"); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
	file, err := registry.OpenFile(regPath)
	if err != nil {
		t.Fatal(err)
	}
	register := func(user string) *twproto.PrivateKey {
		k, err := twproto.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := file.Register(ctx, user, k.PubKey()); err != nil {
			t.Fatal(err)
		}
		return k
	}
	mallory := register("mallory")
	var ghosts, real []string
	for i := range 20 {
		ghosts = append(ghosts, fmt.Sprintf("ghost%03d", i))
	}
	for i := range 70 {
		real = append(real, fmt.Sprintf("real%03d", i))
		register(real[i])
	}
	best, err := file.BestHeight(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := MemberList(ctx, MemberListConfig{
		Victim: v.rpc, Local: "alice", LocalK: 0, Member: "mallory", MemberKey: mallory,
		Ghosts: ghosts, Registered: real, Height: best,
		Restart: func(ctx context.Context) (Caller, error) {
			v.stop()
			v = startNode(t, cfg)
			return v.rpc, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	// alice and mallory, named by the invite, may take two places of the cap.
	capMin, capMax := dm.MaxGroupFollows-2, dm.MaxGroupFollows
	if res.GhostsBefore != 0 || res.RegBefore != 0 {
		t.Fatalf("followed before the list: %+v", res)
	}
	if res.GhostsAfter != 0 || res.GhostsRestart != 0 {
		t.Fatalf("unregistered members followed: %+v", res)
	}
	for _, n := range []int{res.RegAfter, res.RegRestart} {
		if n < capMin || n > capMax {
			t.Fatalf("registered members followed %d (after restart %d), want %d..%d", res.RegAfter, res.RegRestart, capMin, capMax)
		}
	}
}
