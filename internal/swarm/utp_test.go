package swarm

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"os"
	"testing"
	"time"
)

type utpRecord struct {
	Capture string  `json:"capture"`
	Epoch   float64 `json:"epoch"`
	Src     string  `json:"src"`
	Dst     string  `json:"dst"`
	Hex     string  `json:"hex"`
	UTP     struct {
		Type string `json:"type"`
	} `json:"utp"`
}

func loadUTP(t *testing.T) []utpRecord {
	t.Helper()
	f, err := os.Open("../../testdata/swarm/wire/utp_packets.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []utpRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r utpRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestUTPResetForCapturedSyns builds our reset for every SYN twisterd sent
// and checks the fields libtorrent matches it by.
func TestUTPResetForCapturedSyns(t *testing.T) {
	recs := loadUTP(t)
	syns := 0
	for _, r := range recs {
		b := mustHex(t, r.Hex)
		if !IsUTP(b) {
			t.Fatalf("captured uTP packet not recognised: %s", r.Hex)
		}
		reset := UTPReset(b, time.Unix(1795483966, 0))
		if r.UTP.Type != "ST_SYN" {
			if reset != nil {
				t.Fatalf("reset for a %s", r.UTP.Type)
			}
			continue
		}
		syns++
		if len(reset) != utpHeaderLen || reset[0] != 0x31 || reset[1] != 0 {
			t.Fatalf("reset header %x", reset)
		}
		if got, want := binary.BigEndian.Uint16(reset[2:]), binary.BigEndian.Uint16(b[2:]); got != want {
			t.Fatalf("connection id %d, SYN's is %d", got, want)
		}
		if got, want := binary.BigEndian.Uint16(reset[18:]), binary.BigEndian.Uint16(b[16:]); got != want {
			t.Fatalf("ack_nr %d, SYN seq_nr %d", got, want)
		}
	}
	if syns < 10 {
		t.Fatalf("only %d SYNs in capture", syns)
	}
	if IsUTP([]byte("d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:z1:qe")) {
		t.Fatal("DHT packet taken for uTP")
	}
	if UTPReset([]byte{0x41}, time.Now()) != nil {
		t.Fatal("short packet answered")
	}
}

// TestMeasuredUTPFallbackDelay measures, from capture 2 (uTP SYNs dropped),
// how long twisterd waits after an unanswered uTP SYN before it dials TCP
// (docs/swarm.md). Capture 1's self-dials, also unanswered, agree.
func TestMeasuredUTPFallbackDelay(t *testing.T) {
	recs := loadUTP(t)
	b, err := os.ReadFile("../../testdata/swarm/wire/peerwire_sessions_index.json")
	if err != nil {
		t.Fatal(err)
	}
	var index []struct {
		Transport, Capture, Start, Initiator, Responder, Kind string
	}
	if err := json.Unmarshal(b, &index); err != nil {
		t.Fatal(err)
	}
	// node2 -> node1 data sessions over TCP in capture 2: SYN at t0, TCP at t1.
	var synAt float64
	for _, r := range recs {
		if r.Capture == "capture2_tcp.pcap" && r.UTP.Type == "ST_SYN" && r.Src == "127.0.0.1:31002" && r.Dst == "127.0.0.1:31001" {
			synAt = r.Epoch
			break
		}
	}
	var tcpAt time.Time
	for _, s := range index {
		if s.Capture == "capture2_tcp.pcap" && s.Transport == "tcp" && s.Kind == "swarm data session between node1 and node2" {
			tcpAt, err = time.Parse(time.RFC3339Nano, s.Start)
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if synAt == 0 || tcpAt.IsZero() {
		t.Fatal("capture lacks the fallback")
	}
	delay := time.Duration((float64(tcpAt.UnixNano())/1e9 - synAt) * float64(time.Second))
	t.Logf("twisterd uTP->TCP fallback after an unanswered SYN: %v", delay.Round(time.Millisecond))
	if delay < 2900*time.Millisecond || delay > 3100*time.Millisecond {
		t.Fatalf("fallback delay %v, documented as 3.00 s", delay)
	}
}
