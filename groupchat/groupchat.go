// Package groupchat implements twisterd's group-chat RPC operations
// (creategroup, listgroups, getgroupinfo, newgroupinvite,
// newgroupdescription, leavegroup; spec §6.5, §8.4) on top of the DM engine
// (package dm), the wallet and the message store.
//
// It owns the group flows; the rules for received group posts are the
// engine's, the bytes on disk the wallet's and msgstore's. It never touches
// sockets: posts go out through dm.Engine.Send.
//
// A group is known when its alias is in the wallet (the key is what makes a
// group, spec §6.1); its description and members live in msgstore.
package groupchat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// Errors with twisterd's RPC messages (contracts.md).
var (
	ErrUnknownGroup   = errors.New("unknown group alias")
	ErrUnknownUser    = errors.New("unknown user")
	ErrEncryptToGroup = errors.New("error encrypting to pubkey of group alias")
	// ErrNoMembers refuses a newgroupinvite of nobody, which twisterd
	// answers with success after re-sending the member list only.
	ErrNoMembers = errors.New("newgroupinvite: no new member given")
)

// unknownGroup names the alias after twisterd's "unknown group alias".
func unknownGroup(alias string) error {
	return &dm.CulpritError{Err: ErrUnknownGroup, Detail: fmt.Sprintf(" '%s'", alias)}
}

// membersChunkLimit is newgroupinvite's byte estimate per group_members
// post (spec §6.5 step 3).
const membersChunkLimit = 150

// Info is getgroupinfo's answer.
type Info struct {
	Alias       string
	Description string
	Members     []string // sorted
	// Moved is set when removegroupmember moved the group (remove.go).
	Moved *Moved
	// MovedFrom is the alias of the group this one replaces, if any.
	MovedFrom string
}

// Config wires a Service; all but Logger are required.
type Config struct {
	Engine *dm.Engine
	Wallet *wallet.Wallet
	Store  *msgstore.Store
	Logger *slog.Logger
}

// Service runs the group operations.
type Service struct {
	engine *dm.Engine
	wallet *wallet.Wallet
	store  *msgstore.Store
	log    *slog.Logger
}

// New builds a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Engine == nil || cfg.Wallet == nil || cfg.Store == nil {
		return nil, errors.New("groupchat: Engine, Wallet and Store are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{engine: cfg.Engine, wallet: cfg.Wallet, store: cfg.Store, log: log}, nil
}

// Create is creategroup: a new key, or the given WIF, registered with desc.
// It returns the local alias. An invalid WIF or a key that belongs to a
// local user is refused with wallet.ErrInvalidKey (twisterd answers "" with
// no error and creates nothing). Importing the key of a
// group already held returns its alias and leaves its description alone.
// Posts that arrived before the key are processed with it at once.
func (s *Service) Create(ctx context.Context, desc, wif string) (string, error) {
	var key *twproto.PrivateKey
	var err error
	if wif == "" {
		key, err = twproto.NewPrivateKey()
		if err != nil {
			return "", fmt.Errorf("creategroup: %w", err)
		}
	} else if key, err = twproto.ParseWIF(wif); err != nil {
		return "", dm.Culprit(wallet.ErrInvalidKey, "groupprivkey is not a WIF private key")
	}
	alias, err := s.engine.RegisterGroup(ctx, key, desc)
	if err != nil {
		return "", fmt.Errorf("creategroup: %w", err)
	}
	if alias == "" {
		return "", dm.Culprit(wallet.ErrInvalidKey, "groupprivkey is the key of a user of this wallet, not of a group")
	}
	return alias, nil
}

// groupKey returns the key of a known group.
func (s *Service) groupKey(alias string) (*twproto.PrivateKey, error) {
	if !wallet.IsGroupAlias(alias) {
		return nil, unknownGroup(alias)
	}
	key, err := s.wallet.Key(alias)
	if errors.Is(err, wallet.ErrUserNotFound) {
		return nil, unknownGroup(alias)
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}

// List is listgroups: every group with no user; with a user, the groups it
// is a member of, or with onlyIgnored the groups it ignores.
func (s *Service) List(user string, onlyIgnored bool) ([]string, error) {
	aliases, err := s.wallet.GroupAliases()
	if err != nil {
		return nil, fmt.Errorf("listgroups: %w", err)
	}
	out := []string{}
	if user == "" {
		err := s.store.View(func(tx *msgstore.Tx) error {
			for _, a := range aliases {
				if !hiddenAsMoved(tx, a, "") {
					out = append(out, a)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("listgroups: %w", err)
		}
		return out, nil
	}
	err = s.store.View(func(tx *msgstore.Tx) error {
		if !tx.HasUser(user) {
			return &dm.CulpritError{Err: ErrUnknownUser, Detail: fmt.Sprintf(" '%s'", user)}
		}
		if onlyIgnored {
			out = tx.Ignored(user)
			return nil
		}
		for _, a := range aliases {
			if tx.IsGroupMember(a, user) && !hiddenAsMoved(tx, a, user) {
				out = append(out, a)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Info is getgroupinfo.
func (s *Service) Info(alias string) (Info, error) {
	if _, err := s.groupKey(alias); err != nil {
		return Info{}, err
	}
	info := Info{Alias: alias, Members: []string{}}
	err := s.store.View(func(tx *msgstore.Tx) error {
		if g, ok := tx.Group(alias); ok {
			info.Description, info.Members = g.Description, g.Members
		}
		info.Moved, info.MovedFrom = moveInfo(tx, alias)
		return nil
	})
	if err != nil {
		return Info{}, fmt.Errorf("getgroupinfo: %w", err)
	}
	return info, nil
}

// Invite is newgroupinvite (spec §6.5): a group_invite to each new member
// in array order as posts k, k+1, ..., then the whole member list, old and
// new, to the group in chunks cut by twisterd's 150-byte estimate: the same
// posts and ks as twisterd. Unlike twisterd, every post is encrypted and
// signed before the first is published, so a failure consumes no k.
func (s *Service) Invite(ctx context.Context, user string, k int64, alias string, members []string) error {
	if !slices.ContainsFunc(members, func(m string) bool { return m != "" }) {
		return ErrNoMembers
	}
	key, err := s.groupKey(alias)
	if err != nil {
		return err
	}
	var g msgstore.Group
	var mv msgstore.Move
	if err := s.store.View(func(tx *msgstore.Tx) error { g, _ = tx.Group(alias); mv = tx.GroupMove(alias); return nil }); err != nil {
		return fmt.Errorf("newgroupinvite: %w", err)
	}
	if mv.To != "" {
		return &MovedError{Alias: alias, To: mv.To}
	}
	list := slices.Clone(g.Members)
	var outs []dm.Outgoing
	invite, err := s.invitePayload(alias, g.Description, key)
	if err != nil {
		return fmt.Errorf("newgroupinvite: %w", err)
	}
	for _, m := range members {
		list = append(list, m)
		outs = append(outs, dm.Outgoing{To: m, Payload: invite, EncryptErr: dm.ErrEncryptToDest})
	}
	slices.Sort(list)
	list = slices.Compact(list)
	for _, chunk := range memberChunks(list) {
		outs = append(outs, dm.Outgoing{To: alias, Payload: twproto.EncodeGroupMembers(chunk), EncryptErr: ErrEncryptToGroup})
	}
	// twisterd clears the ignore flag of invited local users first; the
	// invites this node processes itself then reach them.
	err = s.store.Update(func(tx *msgstore.Tx) error {
		for _, m := range members {
			if err := tx.SetIgnored(m, alias, false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("newgroupinvite: %w", err)
	}
	if _, err := s.engine.Send(ctx, user, k, outs); err != nil {
		return err
	}
	return nil
}

// memberChunks cuts a sorted member list as newgroupinvite does: each name
// adds len+2+len/10 to a counter, and a chunk closes after the name that
// takes the counter over 150 (spec §6.5 step 3).
func memberChunks(sorted []string) [][]string {
	var chunks [][]string
	for len(sorted) > 0 {
		var chunk []string
		n := 0
		for len(sorted) > 0 && n <= membersChunkLimit {
			m := sorted[0]
			sorted = sorted[1:]
			if m == "" {
				continue
			}
			chunk = append(chunk, m)
			n += len(m) + 2 + len(m)/10
		}
		if len(chunk) > 0 {
			chunks = append(chunks, chunk)
		}
	}
	return chunks
}

// SetDescription is newgroupdescription: a group_invite with the new
// description sent to the group key, one k. Every member's node, this one
// included, stores "*** '<user>' changed group description to: <desc>"
// (twisterd drops it: every member already holds the key; docs/engine.md).
func (s *Service) SetDescription(ctx context.Context, user string, k int64, alias, desc string) error {
	key, err := s.groupKey(alias)
	if err != nil {
		return err
	}
	out := dm.Outgoing{To: alias, Payload: twproto.EncodeGroupInvite(desc, key.WIF()), EncryptErr: ErrEncryptToGroup}
	if _, err := s.engine.Send(ctx, user, k, []dm.Outgoing{out}); err != nil {
		return err
	}
	// The engine processed our own post in the send's transaction: the
	// description is set there (the group key is in the wallet).
	return nil
}

// Leave is leavegroup (spec §6.5): drop the user's history of the group,
// ignore it from now on, leave the member list. No DM is sent and the key
// stays in the wallet.
func (s *Service) Leave(ctx context.Context, user, alias string) error {
	if _, err := s.groupKey(alias); err != nil {
		return err
	}
	return s.store.Update(func(tx *msgstore.Tx) error {
		if !tx.HasUser(user) {
			return &dm.CulpritError{Err: ErrUnknownUser, Detail: fmt.Sprintf(" '%s'", user)}
		}
		if err := tx.DropConversation(user, alias); err != nil {
			return err
		}
		if err := tx.SetIgnored(user, alias, true); err != nil {
			return err
		}
		return tx.RemoveGroupMember(alias, user)
	})
}
