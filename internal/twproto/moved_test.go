package twproto

import (
	"bytes"
	"slices"
	"testing"
)

// The "moved" dict rides inside group_invite: desc and key read as before
// (twisterd's dict_find_string("desc"/"key") ignores other keys), and the
// extra dict round-trips.
func TestGroupInviteMoved(t *testing.T) {
	const wif = "KzTAkjGZu9xbVgeFyuWkcR4A3X7U8cvigCsBYdKoZrx6p4Mxc8m8"
	var from [20]byte
	for i := range from {
		from[i] = byte(i + 1)
	}
	raw := EncodeGroupInviteMoved("weekend", wif, GroupMove{From: from, Removed: []string{"carol", "dave"}})
	want := "d12:group_invited4:desc7:weekend3:key52:" + wif + "5:movedd4:from20:" + string(from[:]) + "7:removedl5:carol4:daveeeee"
	if string(raw) != want {
		t.Fatalf("encoding\n%q\nwant\n%q", raw, want)
	}
	p := DecodePayload(raw)
	if p.Kind != PayloadGroupInvite || !p.InviteValid || p.InviteDesc != "weekend" || p.InviteKey != wif {
		t.Fatalf("decoded %+v", p)
	}
	if p.Moved == nil || p.Moved.From != from || !slices.Equal(p.Moved.Removed, []string{"carol", "dave"}) {
		t.Fatalf("moved %+v", p.Moved)
	}
	// A plain invite has no Moved; the plain part of the moved invite is a
	// prefix of the plain invite's bytes up to the key.
	plain := EncodeGroupInvite("weekend", wif)
	if DecodePayload(plain).Moved != nil {
		t.Fatal("plain invite decoded with a move")
	}
	if !bytes.HasPrefix(raw, plain[:len(plain)-2]) {
		t.Fatal("moved invite does not extend the plain one")
	}
	// Malformed moved dicts are ignored, the invite stays valid.
	for _, bad := range []string{
		"d12:group_invited4:desc1:d3:key1:k5:movedi1eee",
		"d12:group_invited4:desc1:d3:key1:k5:movedd4:from3:abceee",
		"d12:group_invited4:desc1:d3:key1:k5:movedd4:from20:aaaaaaaaaaaaaaaaaaaa7:removedi1eeee",
	} {
		p := DecodePayload([]byte(bad))
		if !p.InviteValid || p.Moved != nil {
			t.Errorf("%q: %+v", bad, p)
		}
	}
}
