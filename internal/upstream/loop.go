package upstream

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ViaHeader carries the ids of the twgroupd servers a forwarded request has
// passed through, comma separated, so a server that finds its own id knows
// its -upstream leads back to itself (directly or through other twgroupds)
// and answers an error instead of forwarding forever.
const ViaHeader = "X-Twgroupd-Via"

// MaxHops bounds the chain of twgroupd servers a request may pass.
const MaxHops = 8

type viaKey struct{}

// WithVia returns ctx carrying the forwarding chain via (the header's value
// with the current server's id appended); Forward sends it upstream.
func WithVia(ctx context.Context, via string) context.Context {
	return context.WithValue(ctx, viaKey{}, via)
}

func viaFrom(ctx context.Context) string {
	v, _ := ctx.Value(viaKey{}).(string)
	return v
}

// LoopError says why a request may not be forwarded again.
type LoopError struct{ Hops int }

func (e *LoopError) Error() string {
	if e.Hops > MaxHops {
		return fmt.Sprintf("forwarding loop: request passed %d twgroupd servers (limit %d)", e.Hops, MaxHops)
	}
	return "forwarding loop: -upstream leads back to this twgroupd"
}

// CheckVia appends id to the incoming chain, or refuses when id is in it
// already or the chain is too long.
func CheckVia(incoming, id string) (string, error) {
	var hops []string
	if incoming = strings.TrimSpace(incoming); incoming != "" {
		hops = strings.Split(incoming, ",")
	}
	for _, h := range hops {
		if strings.TrimSpace(h) == id {
			return "", &LoopError{}
		}
	}
	if len(hops)+1 > MaxHops {
		return "", &LoopError{Hops: len(hops) + 1}
	}
	return strings.Join(append(hops, id), ","), nil
}

// PointsAtSelf reports whether rawURL names this host at port, the
// node's own RPC port: its host is loopback, unspecified or an address of
// one of this machine's interfaces (names are resolved, bounded by ctx).
func PointsAtSelf(ctx context.Context, rawURL string, port int) (bool, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return false, fmt.Errorf("upstream url: invalid")
	}
	p := u.Port()
	if p == "" {
		p = "80"
		if u.Scheme == "https" {
			p = "443"
		}
	}
	if n, err := strconv.Atoi(p); err != nil || n != port {
		return false, nil
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return false, nil // unresolvable now: not provably us; calls will fail clearly
		}
		addrs = ips
	}
	local := map[netip.Addr]bool{}
	if ifaddrs, err := net.InterfaceAddrs(); err == nil {
		for _, ia := range ifaddrs {
			if pfx, err := netip.ParsePrefix(ia.String()); err == nil {
				local[pfx.Addr().Unmap()] = true
			}
		}
	}
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if a.IsLoopback() || a.IsUnspecified() || local[a] {
			return true, nil
		}
	}
	return false, nil
}
