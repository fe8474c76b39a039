package twproto

import (
	"errors"

	"github.com/anacrolix/torrent/bencode"
)

// PayloadKind tells what a decrypted DM carries (spec §5.1, §5.3 step 6).
type PayloadKind int

const (
	// PayloadText is a message: the new {msg,to} format or old plain text.
	PayloadText PayloadKind = iota
	// PayloadGroupInvite is {"group_invite":{desc,key}}.
	PayloadGroupInvite
	// PayloadGroupMembers is {"group_members":[...]}.
	PayloadGroupMembers
)

// Payload is a decoded DM plaintext.
type Payload struct {
	Kind PayloadKind
	// Msg and To of a text message. For old-format or unrecognised dicts Msg
	// is the whole plaintext and To is empty: the receiver fills in its own
	// username, as twisterd does.
	Msg, To string
	// NewFormat is true when Msg/To came from a {msg,to} dict.
	NewFormat bool
	// InviteDesc and InviteKey of a group_invite; InviteValid when both are
	// strings (registerNewGroup runs only then).
	InviteDesc, InviteKey string
	InviteValid           bool
	// Moved is twgroupd's extra "moved" dict of a group_invite: the new
	// group replaces an old one (removegroupmember). twisterd reads only
	// desc and key and ignores it (docs/engine.md). Nil when absent or
	// malformed.
	Moved *GroupMove
	// Members of group_members: the non-empty strings, in order.
	Members []string
}

// EncodeMessage is the new-format payload {msg, to}.
func EncodeMessage(msg, to string) []byte {
	b := []byte{'d'}
	b = appendString(b, []byte("msg"))
	b = appendString(b, []byte(msg))
	b = appendString(b, []byte("to"))
	b = appendString(b, []byte(to))
	return append(b, 'e')
}

// EncodeGroupInvite is {"group_invite":{"desc":desc,"key":wif}}.
func EncodeGroupInvite(desc, wif string) []byte {
	b := []byte{'d'}
	b = appendString(b, []byte("group_invite"))
	b = append(b, 'd')
	b = appendString(b, []byte("desc"))
	b = appendString(b, []byte(desc))
	b = appendString(b, []byte("key"))
	b = appendString(b, []byte(wif))
	b = append(b, 'e')
	return append(b, 'e')
}

// GroupMove links a new group key to the group it replaces.
type GroupMove struct {
	From    [20]byte // Hash160 of the old group's serialized public key
	Removed []string // the members left out, non-empty strings
}

// MaxMovedRemoved bounds the removed list a received "moved" dict may name.
const MaxMovedRemoved = 64

// EncodeGroupInviteMoved is a group_invite with the extra "moved" dict:
// {"group_invite":{"desc":desc,"key":wif,"moved":{"from":<20 bytes>,
// "removed":[...]}}}, keys in bencode order.
func EncodeGroupInviteMoved(desc, wif string, mv GroupMove) []byte {
	b := []byte{'d'}
	b = appendString(b, []byte("group_invite"))
	b = append(b, 'd')
	b = appendString(b, []byte("desc"))
	b = appendString(b, []byte(desc))
	b = appendString(b, []byte("key"))
	b = appendString(b, []byte(wif))
	b = appendString(b, []byte("moved"))
	b = append(b, 'd')
	b = appendString(b, []byte("from"))
	b = appendString(b, mv.From[:])
	b = appendString(b, []byte("removed"))
	b = append(b, 'l')
	for _, m := range mv.Removed {
		b = appendString(b, []byte(m))
	}
	b = append(b, 'e', 'e', 'e')
	return append(b, 'e')
}

// decodeMove reads a "moved" dict; nil unless from is 20 bytes and removed
// a list of at most MaxMovedRemoved strings.
func decodeMove(raw bencode.Bytes) *GroupMove {
	if len(raw) == 0 || raw[0] != 'd' {
		return nil
	}
	d, err := rawDict(raw)
	if err != nil {
		return nil
	}
	from, ok := bstring(d["from"])
	if !ok || len(from) != 20 {
		return nil
	}
	mv := &GroupMove{}
	copy(mv.From[:], from)
	if r := d["removed"]; len(r) > 0 {
		var list []bencode.Bytes
		if r[0] != 'l' || bencode.Unmarshal(r, &list) != nil || len(list) > MaxMovedRemoved {
			return nil
		}
		for _, e := range list {
			if s, ok := bstring(e); ok && s != "" {
				mv.Removed = append(mv.Removed, s)
			}
		}
	}
	return mv
}

// EncodeGroupMembers is {"group_members":[...]}.
func EncodeGroupMembers(members []string) []byte {
	b := []byte{'d'}
	b = appendString(b, []byte("group_members"))
	b = append(b, 'l')
	for _, m := range members {
		b = appendString(b, []byte(m))
	}
	b = append(b, 'e')
	return append(b, 'e')
}

// DecodePayload interprets a plaintext as processReceivedDM does (spec §5.3
// step 6). It never fails: anything that is not a recognised dict is text.
// group_members is reported whatever the key; the caller applies it only for
// group keys and otherwise stores the raw plaintext as text.
func DecodePayload(plain []byte) Payload {
	text := Payload{Kind: PayloadText, Msg: string(plain)}
	if len(plain) == 0 || plain[0] != 'd' {
		return text
	}
	// twisterd bdecodes the zero-padded plaintext truncated at orig; a dict
	// followed by trailing bytes is still a dict to lazy_bdecode.
	m, err := rawDict(plain)
	if err != nil {
		var ute bencode.ErrUnusedTrailingBytes
		if !errors.As(err, &ute) || m == nil {
			return text
		}
	}
	if gi, ok := m["group_invite"]; ok && len(gi) > 0 && gi[0] == 'd' {
		p := Payload{Kind: PayloadGroupInvite}
		if d, err := rawDict(gi); err == nil {
			var okDesc, okKey bool
			p.InviteDesc, okDesc = bstring(d["desc"])
			p.InviteKey, okKey = bstring(d["key"])
			p.InviteValid = okDesc && okKey
			p.Moved = decodeMove(d["moved"])
		}
		return p
	}
	if gm, ok := m["group_members"]; ok && len(gm) > 0 && gm[0] == 'l' {
		var list []bencode.Bytes
		if bencode.Unmarshal(gm, &list) == nil {
			p := Payload{Kind: PayloadGroupMembers}
			for _, e := range list {
				if s, ok := bstring(e); ok && s != "" {
					p.Members = append(p.Members, s)
				}
			}
			p.Msg = string(plain) // shown as text when the key is not a group's
			return p
		}
	}
	msg, okMsg := bstring(m["msg"])
	to, okTo := bstring(m["to"])
	if okMsg && okTo {
		return Payload{Kind: PayloadText, Msg: msg, To: to, NewFormat: true}
	}
	return text
}
