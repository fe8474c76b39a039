package upstream

import (
	"context"
	"net"
	"net/netip"
	"testing"
)

func TestPointsAtSelf(t *testing.T) {
	ctx := context.Background()
	for raw, want := range map[string]bool{
		"http://u:p@127.0.0.1:28332":        true,
		"http://u:p@127.0.0.7:28332/":       true,
		"http://localhost:28332":            true,
		"http://[::1]:28332":                true,
		"http://0.0.0.0:28332":              true,
		"http://u:p@127.0.0.1:28333":        false,
		"http://127.0.0.1":                  false, // port 80
		"http://twisterd.invalid:28332":     false, // does not resolve
		"http://u:p@192.0.2.1:28332":        false, // TEST-NET, not ours
		"https://u:p@127.0.0.1:28332/path/": true,
	} {
		got, err := PointsAtSelf(ctx, raw, 28332)
		if err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", raw, got, err, want)
		}
	}
	// An address of one of this machine's interfaces is this node too.
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil || p.Addr().IsLoopback() || !p.Addr().Is4() {
			continue
		}
		if got, _ := PointsAtSelf(ctx, "http://"+p.Addr().String()+":28332", 28332); !got {
			t.Errorf("interface address %s not recognized", p.Addr())
		}
		break
	}
}

func TestViaHeaderSent(t *testing.T) {
	via, err := CheckVia("", "a")
	if err != nil || via != "a" {
		t.Fatalf("%q %v", via, err)
	}
	if _, err := CheckVia("b, a", "a"); err == nil {
		t.Error("own id in the chain accepted")
	}
	if viaFrom(WithVia(context.Background(), "x,y")) != "x,y" {
		t.Error("via lost in the context")
	}
}
