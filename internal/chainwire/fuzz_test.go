package chainwire

import (
	"bytes"
	"testing"
)

// FuzzReadMessage: any byte stream either fails cleanly or decodes to a
// message that re-encodes to a payload that decodes to the same bytes.
func FuzzReadMessage(f *testing.F) {
	for _, file := range []string{"p2p_sync.jsonl", "p2p_headers_probe.jsonl"} {
		for i, rec := range loadSession(f, file) {
			if i < 12 {
				f.Add(rec.frame(f))
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadMessage(bytes.NewReader(b), 1<<16)
		if err != nil {
			return
		}
		p := m.Encode(nil)
		m2, err := Decode(m.Command(), p)
		if err != nil {
			t.Fatalf("re-decode %s: %v", m.Command(), err)
		}
		if !bytes.Equal(m2.Encode(nil), p) {
			t.Fatalf("%s: unstable encoding", m.Command())
		}
	})
}

// FuzzDecode feeds payloads to every command's decoder.
func FuzzDecode(f *testing.F) {
	for _, file := range []string{"p2p_sync.jsonl", "p2p_headers_probe.jsonl"} {
		for _, rec := range loadSession(f, file) {
			fr := rec.frame(f)
			f.Add(rec.Command, fr[HeaderSize:])
		}
	}
	f.Add("cp", (&MsgCP{Height: 1, Username: []byte("a"), Sign: []byte{1}}).Encode(nil))
	f.Add("addr", (&MsgAddr{Addrs: []TimedAddr{{Time: 1}}}).Encode(nil))
	f.Add("ping", []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, cmd string, payload []byte) {
		m, err := Decode(cmd, payload)
		if err != nil {
			return
		}
		if _, ok := m.(*MsgUnknown); ok {
			return
		}
		// Exact except for bool bytes other than 0/1 (version's relay).
		p := m.Encode(nil)
		m2, err := Decode(cmd, p)
		if err != nil || !bytes.Equal(m2.Encode(nil), p) {
			t.Fatalf("%s: re-encoding unstable: %v", cmd, err)
		}
		if cmd != CmdVersion && !bytes.Equal(p, payload) {
			t.Fatalf("%s: decode/encode not exact", cmd)
		}
	})
}

// FuzzPushData: scripts never panic and pushes re-encode within the script.
func FuzzPushData(f *testing.F) {
	f.Add([]byte{0x05, 'a', 'l', 'i', 'c', 'e', 0x41})
	f.Add(AppendPush(nil, make([]byte, 300)))
	f.Fuzz(func(t *testing.T, script []byte) {
		pushes, err := PushData(script)
		if err != nil {
			return
		}
		total := 0
		for _, p := range pushes {
			total += len(p)
		}
		if total > len(script) {
			t.Fatal("pushes longer than the script")
		}
	})
}
