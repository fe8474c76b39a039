package devnet

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestScaleScenario is the fast version of `make net`: 20 nodes, each on
// its own loopback address, everyone following everyone, a group of all,
// a message and two nodes restarted while 3 messages are sent. Every step
// must reach every node (within the generous phase limit; the timings are
// printed, not asserted) and no node may hold more than 100 sockets.
// About 13 s on a quiet 2-core machine (it was 12 nodes before twg_swarms,
// when 20 took up to a minute under load).
func TestScaleScenario(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const n = 20
	var log bytes.Buffer
	nw, err := Start(ctx, Options{Binary: binary, Dir: t.TempDir(), Nodes: n, Users: ScaleUsers(n), BlockInterval: time.Second, Out: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	defer nw.Stop()
	for i, nd := range nw.Nodes {
		if want := LoopbackIP(i); nd.IP != want || !strings.Contains(nd.conf.text(), "\nbind="+want+"\n") {
			t.Fatalf("%s on %s (conf %q), want its own address %s", nd.Name, nd.IP, nd.conf.text(), want)
		}
	}
	rep, err := nw.Scale(ctx, ScaleOptions{Phase: 90 * time.Second, Settle: time.Second})
	t.Logf("\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	PrintScale(&table, rep)
	t.Logf("\n%s", table.String())
	for what, st := range map[string]Stat{"invite": rep.Invite, "message": rep.Message, "churn catch-up": rep.Churn} {
		if st.Reached != st.Of || st.Of == 0 {
			t.Errorf("%s reached %d of %d nodes", what, st.Reached, st.Of)
		}
	}
	if rep.Sockets.Max > 100 || rep.Sockets.Max == 0 {
		t.Errorf("peak sockets per node %d, want 1..100", rep.Sockets.Max)
	}
}
