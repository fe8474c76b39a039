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
