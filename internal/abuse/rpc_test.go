package abuse

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/rpc"
)

const rpcPass = "abuse-test-password-0123456789"

// rpcVictim is a twgroupd JSON-RPC server on 127.0.0.1 with small limits,
// so the drivers' effects show in a short run.
func rpcVictim(t *testing.T, cfg rpc.Config) RPCTarget {
	t.Helper()
	cfg.User, cfg.Password = "user", rpcPass
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Logger = quiet()
	srv, err := rpc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	return RPCTarget{Addr: netip.MustParseAddrPort(srv.Addrs()[0].String()), User: "user", Password: rpcPass}
}

func TestSlowBodySmall(t *testing.T) {
	target := rpcVictim(t, rpc.Config{MaxInFlight: 2, BodyTimeout: time.Minute})
	res, err := SlowBody(context.Background(), SlowBodyConfig{Target: target, Clients: 6, Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Legit.Calls == 0 || res.Legit.OK != res.Legit.Calls {
		t.Errorf("legitimate calls failed beside trickling bodies: %v", res.Legit)
	}
}

// A body not complete within BodyTimeout costs the trickler its connection.
func TestSlowBodyCut(t *testing.T) {
	target := rpcVictim(t, rpc.Config{BodyTimeout: 300 * time.Millisecond})
	res, err := SlowBody(context.Background(), SlowBodyConfig{Target: target, Clients: 2, Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Reconnects == 0 {
		t.Error("no trickling connection was cut by the body timeout")
	}
}

func TestWrongPasswordsSmall(t *testing.T) {
	const interval = 100 * time.Millisecond
	target := rpcVictim(t, rpc.Config{AuthFailInterval: interval})
	d := 1500 * time.Millisecond
	res, err := WrongPasswords(context.Background(), WrongPasswordConfig{Target: target, Parallel: 20, Duration: d})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if limit := int64(d/interval) + 2; res.Answered > limit {
		t.Errorf("%d wrong guesses answered in %v, want <= %d", res.Answered, d, limit)
	}
	if res.Legit.Calls == 0 || res.Legit.OK != res.Legit.Calls {
		t.Errorf("the correct password was refused or timed out: %v", res.Legit)
	}
}

func TestCrossOriginAndBatch(t *testing.T) {
	target := rpcVictim(t, rpc.Config{})
	co, err := CrossOrigin(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	if co.OtherOrigin != 403 || co.NullOrigin != 403 || co.Rebound != 403 || co.SameOrigin != 200 {
		t.Errorf("%v", co)
	}
	hb, err := HugeBatch(context.Background(), HugeBatchConfig{Target: target, Elements: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if hb.Status != 400 || !strings.Contains(hb.Reply, "over the limit of 1000") {
		t.Errorf("%v %q", hb, hb.Reply)
	}
	off := target
	off.Addr = netip.MustParseAddrPort("10.1.2.3:28332")
	if _, err := CrossOrigin(context.Background(), off); err == nil {
		t.Error("a target outside 127.0.0.0/8 was accepted")
	}
}
