package swarm

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// liveCapture is testdata/swarm/live/twisterd_restart.json: what a live
// twisterd 0.9.40 sent to twgroupd nodes when it restarted beside them
// (docs/interop.md, "What was checked against twisterd").
type liveCapture struct {
	UTP []struct {
		Epoch    float64 `json:"epoch"`
		Src, Dst string
		Hex      string `json:"hex"`
	} `json:"utp"`
	TCPSyns []struct {
		Epoch    float64 `json:"epoch"`
		Src, Dst string
	} `json:"tcp_syns"`
	Session struct {
		InfoHash     string   `json:"info_hash"`
		PeerIP       string   `json:"peer_ip_seen_by_twisterd"`
		TwisterdToUs []string `json:"twisterd_to_us"`
	} `json:"session"`
}

func loadLive(t *testing.T) liveCapture {
	t.Helper()
	b, err := os.ReadFile("../../testdata/swarm/live/twisterd_restart.json")
	if err != nil {
		t.Fatal(err)
	}
	var c liveCapture
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLiveUTPResetMakesTwisterdFallBackAtOnce: every SYN a live twisterd
// sent to an address we listen on got our reset and a TCP connect within
// milliseconds; the SYNs to an address we did not listen on (the source
// address of our earlier dial, see TestDialLeavesFromListenIP) were never
// answered and their TCP connects came 3 s later.
func TestLiveUTPResetMakesTwisterdFallBackAtOnce(t *testing.T) {
	c := loadLive(t)
	tcpAfter := func(dst string, after float64) float64 {
		for _, s := range c.TCPSyns {
			if s.Dst == dst && s.Epoch >= after {
				return s.Epoch - after
			}
		}
		return -1
	}
	var answered, unanswered int
	for _, syn := range c.UTP {
		b := mustHex(t, syn.Hex)
		if b[0]>>4 != utpSyn {
			continue
		}
		ours := UTPReset(b, time.Unix(1795490165, 0))
		if ours == nil {
			t.Fatalf("no reset for twisterd's SYN %s", syn.Hex)
		}
		var sent []byte
		for _, r := range c.UTP {
			rb := mustHex(t, r.Hex)
			if r.Src == syn.Dst && r.Dst == syn.Src && rb[0]>>4 == utpReset && bytes.Equal(rb[2:4], b[2:4]) {
				sent = rb
			}
		}
		delay := tcpAfter(syn.Dst, syn.Epoch)
		if sent == nil {
			unanswered++
			t.Logf("SYN to %s unanswered: TCP after %.3f s", syn.Dst, delay)
			if delay < 2.9 || delay > 3.1 {
				t.Fatalf("unanswered SYN to %s: TCP after %.3f s, want libtorrent's 3 s", syn.Dst, delay)
			}
			continue
		}
		answered++
		// What twisterd accepted: same connection id and ack_nr as ours.
		if !bytes.Equal(sent[:4], ours[:4]) || !bytes.Equal(sent[18:20], ours[18:20]) ||
			binary.BigEndian.Uint16(sent[18:20]) != binary.BigEndian.Uint16(b[16:18]) {
			t.Fatalf("reset sent %x, UTPReset builds %x", sent, ours)
		}
		t.Logf("SYN to %s reset: TCP after %.1f ms", syn.Dst, delay*1000)
		if delay < 0 || delay > 0.5 {
			t.Fatalf("reset SYN to %s: TCP after %.3f s", syn.Dst, delay)
		}
	}
	if answered == 0 || unanswered == 0 {
		t.Fatalf("capture has %d answered and %d unanswered SYNs", answered, unanswered)
	}
}

// TestLiveTwisterdStreamParses: every message a live twisterd sent us
// parses, and its allowed-fast set for 16 pieces (8 per bitfield byte,
// wire README obs. 7) is the one we compute, which the recorded captures
// (at most 10 pieces) could not check.
func TestLiveTwisterdStreamParses(t *testing.T) {
	c := loadLive(t)
	stream := mustHex(t, strings.Join(c.Session.TwisterdToUs, ""))
	hs, err := ParseHandshake(stream[:HandshakeLen])
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(hs.InfoHash[:]) != c.Session.InfoHash {
		t.Fatalf("info-hash %x", hs.InfoHash)
	}
	mr := newMessageReader(bytes.NewReader(stream[HandshakeLen:]))
	var fast []uint32
	var bitfield []byte
	for {
		m, _, err := mr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("twisterd's stream: %v", err)
		}
		switch m.ID {
		case MsgAllowedFast:
			fast = append(fast, m.Index)
		case MsgBitfield:
			bitfield = m.Data
		case MsgExtended:
			if m.ExtID == 0 {
				if _, err := ParseExtHandshake(m.Data); err != nil {
					t.Fatalf("twisterd's extended handshake: %v", err)
				}
			} else if _, err := ParsePex(m.Data); err != nil {
				t.Fatalf("twisterd's ut_pex: %v", err)
			}
		}
	}
	if len(fast) != 10 || len(bitfield) != 2 {
		t.Fatalf("allowed fast %v, bitfield %x", fast, bitfield)
	}
	var ih [20]byte
	copy(ih[:], mustHex(t, c.Session.InfoHash))
	want := allowedFastSet(netip.MustParseAddr(c.Session.PeerIP), ih, 8*len(bitfield))
	if !slices.Equal(fast, want) {
		t.Fatalf("twisterd sent allowed fast %v, we compute %v", fast, want)
	}
}

func TestDialSource(t *testing.T) {
	for _, tc := range []struct {
		listen string
		want   string
	}{
		{"127.0.0.1:29333", "127.0.0.1:0"},
		{"192.0.2.7:29333", "192.0.2.7:0"},
		{"0.0.0.0:29333", ""},
		{"[::]:29333", ""},
	} {
		a, err := net.ResolveTCPAddr("tcp", tc.listen)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if d := dialSource(a); d != nil {
			got = d.String()
		}
		if got != tc.want {
			t.Errorf("dialSource(%s) = %q, want %q", tc.listen, got, tc.want)
		}
	}
}
