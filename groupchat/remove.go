package groupchat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// Removing a member (removegroupmember, docs/engine.md "Removing a member").
// Whoever holds a group key reads the group forever, so the only removal
// that holds is a new key the removed members never receive: the group
// moves to it, and the old group stays readable but left behind.

// Errors of removegroupmember.
var (
	ErrNoneToRemove = errors.New("no member to remove")
	ErrRemoveAll    = errors.New("cannot remove every member of the group")
	ErrNotMember    = errors.New("not a member of the group")
	ErrGroupMoved   = errors.New("group has moved")
	errNoNewAlias   = errors.New("no new group alias")
)

// NotMemberError names who is not a member (errors.Is ErrNotMember).
type NotMemberError struct{ User, Alias string }

func (e *NotMemberError) Error() string {
	return fmt.Sprintf("'%s' is not a member of group %s", e.User, e.Alias)
}

// Is makes errors.Is(err, ErrNotMember) true.
func (e *NotMemberError) Is(target error) bool { return target == ErrNotMember }

// MovedError says where a moved group went (errors.Is ErrGroupMoved).
type MovedError struct{ Alias, To string }

func (e *MovedError) Error() string {
	return fmt.Sprintf("group %s has moved to %s: use the new group", e.Alias, e.To)
}

// Is makes errors.Is(err, ErrGroupMoved) true.
func (e *MovedError) Is(target error) bool { return target == ErrGroupMoved }

// Moved is the move of a group as getgroupinfo shows it.
type Moved struct {
	To      string   // this node's alias of the new group
	By      string   // who moved it
	Removed []string // who was left out, sorted
	// LeftBehind are members of the old group that are in neither the new
	// group nor Removed: invited to the old group by someone who did not
	// know of the move yet (a race). Invite them to the new group.
	LeftBehind []string
}

// moveInfo reads alias's move record for Info.
func moveInfo(tx *msgstore.Tx, alias string) (*Moved, string) {
	mv := tx.GroupMove(alias)
	if mv.To == "" {
		return nil, mv.From
	}
	old, _ := tx.Group(alias)
	m := &Moved{To: mv.To, By: mv.By, Removed: mv.Removed, LeftBehind: []string{}}
	for _, member := range old.Members {
		if !tx.IsGroupMember(mv.To, member) && !slices.Contains(mv.Removed, member) {
			m.LeftBehind = append(m.LeftBehind, member)
		}
	}
	return m, mv.From
}

// hiddenAsMoved: listgroups leaves out a moved group, except for a user
// who is not in the new group (a removed local user keeps seeing it).
func hiddenAsMoved(tx *msgstore.Tx, alias, user string) bool {
	mv := tx.GroupMove(alias)
	if mv.To == "" {
		return false
	}
	return user == "" || tx.IsGroupMember(mv.To, user)
}

// ListWithMoved is listgroups with include_moved: every group with no
// user, or every group user is a member of, moved ones included.
func (s *Service) ListWithMoved(user string) ([]string, error) {
	aliases, err := s.wallet.GroupAliases()
	if err != nil {
		return nil, fmt.Errorf("listgroups: %w", err)
	}
	if user == "" {
		return aliases, nil
	}
	out := []string{}
	err = s.store.View(func(tx *msgstore.Tx) error {
		if !tx.HasUser(user) {
			return ErrUnknownUser
		}
		for _, a := range aliases {
			if tx.IsGroupMember(a, user) {
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

// invitePayload is the group_invite newgroupinvite sends: for a group that
// replaces a moved one, with the "moved" dict, so an invitee whose node
// holds the old key (one left behind by a race) moves there too.
func (s *Service) invitePayload(alias, desc string, key *twproto.PrivateKey) ([]byte, error) {
	var from msgstore.Move
	var old msgstore.Move
	err := s.store.View(func(tx *msgstore.Tx) error {
		from = tx.GroupMove(alias)
		if from.From != "" {
			old = tx.GroupMove(from.From)
		}
		return nil
	})
	if err != nil || from.From == "" || old.To != alias {
		return twproto.EncodeGroupInvite(desc, key.WIF()), err
	}
	oldKey, err := s.wallet.Key(from.From)
	if err != nil {
		return twproto.EncodeGroupInvite(desc, key.WIF()), nil
	}
	mv := twproto.GroupMove{From: twproto.Hash160(oldKey.PubKey()), Removed: old.Removed}
	return twproto.EncodeGroupInviteMoved(desc, key.WIF(), mv), nil
}

// removedNotice is the one text posted to the old group.
func removedNotice(by string, removed []string) string {
	quoted := make([]string, len(removed))
	for i, r := range removed {
		quoted[i] = "'" + r + "'"
	}
	return fmt.Sprintf("*** '%s' removed %s from the group. The group moved to a new group key: the other members were sent an invite to it by '%s'",
		by, strings.Join(quoted, ", "), by)
}

// RemoveKs is how many ks Remove consumes for a group of members members
// when removing removed of them: one invite per remaining member, the
// member-list chunks of the new group, one notice.
func RemoveKs(members, removed []string) int {
	remaining := remainingMembers(members, removed)
	return len(remaining) + len(memberChunks(remaining)) + 1
}

func remainingMembers(members, removed []string) []string {
	out := []string{}
	for _, m := range members {
		if !slices.Contains(removed, m) {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Remove is removegroupmember: user moves group alias to a new key with
// the same description, leaving removed out. Posts, as k, k+1, ... of user:
// a group_invite to each remaining member in name order (local users
// included) carrying the "moved" dict that links the groups on twgroupd
// nodes, then the remaining members to the new group in newgroupinvite's
// chunks, then one notice to the old group naming the removed members. It
// returns the new group's alias. The old group is marked as moved here and
// wherever a remaining member's twgroupd node processes its invite.
//
// k may be dm.AutoK (the next free ks). Every post is built and committed
// at once (dm.Engine.Send), so a refused call consumes no k; one refused by
// the engine (encryption, k used) leaves an unused, empty group key in
// this node's wallet.
func (s *Service) Remove(ctx context.Context, user string, k int64, alias string, removed []string) (string, error) {
	if k < 0 && k != dm.AutoK {
		return "", dm.ErrNegativeK // before a new key is made
	}
	oldKey, err := s.groupKey(alias)
	if err != nil {
		return "", err
	}
	var g msgstore.Group
	var mv msgstore.Move
	err = s.store.View(func(tx *msgstore.Tx) error {
		g, _ = tx.Group(alias)
		mv = tx.GroupMove(alias)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("removegroupmember: %w", err)
	}
	if mv.To != "" {
		return "", &MovedError{Alias: alias, To: mv.To}
	}
	removed = slices.Clone(removed)
	slices.Sort(removed)
	removed = slices.Compact(removed)
	if len(removed) == 0 || (len(removed) == 1 && removed[0] == "") {
		return "", ErrNoneToRemove
	}
	if !slices.Contains(g.Members, user) {
		return "", &NotMemberError{User: user, Alias: alias}
	}
	for _, r := range removed {
		if !slices.Contains(g.Members, r) {
			return "", &NotMemberError{User: r, Alias: alias}
		}
	}
	if len(removed) > twproto.MaxMovedRemoved {
		return "", fmt.Errorf("removegroupmember: at most %d members at once", twproto.MaxMovedRemoved)
	}
	remaining := remainingMembers(g.Members, removed)
	if len(remaining) == 0 {
		return "", ErrRemoveAll
	}
	if _, err := s.wallet.Key(user); err != nil {
		return "", dm.ErrSign
	}

	newKey, err := twproto.NewPrivateKey()
	if err != nil {
		return "", fmt.Errorf("removegroupmember: %w", err)
	}
	newAlias, err := s.engine.RegisterGroup(ctx, newKey, g.Description)
	if err != nil {
		return "", fmt.Errorf("removegroupmember: %w", err)
	}
	if newAlias == "" || !wallet.IsGroupAlias(newAlias) {
		return "", errNoNewAlias
	}
	move := twproto.GroupMove{From: twproto.Hash160(oldKey.PubKey()), Removed: removed}
	invite := twproto.EncodeGroupInviteMoved(g.Description, newKey.WIF(), move)
	var outs []dm.Outgoing
	for _, m := range remaining {
		outs = append(outs, dm.Outgoing{To: m, Payload: invite, EncryptErr: dm.ErrEncryptToDest})
	}
	for _, chunk := range memberChunks(remaining) {
		outs = append(outs, dm.Outgoing{To: newAlias, Payload: twproto.EncodeGroupMembers(chunk), EncryptErr: ErrEncryptToGroup})
	}
	notice := twproto.EncodeMessage(removedNotice(user, removed), alias)
	outs = append(outs, dm.Outgoing{To: alias, Payload: notice, EncryptErr: ErrEncryptToGroup})
	if _, err := s.engine.Send(ctx, user, k, outs); err != nil {
		return "", err
	}
	err = s.store.Update(func(tx *msgstore.Tx) error {
		return tx.SetGroupMoved(alias, newAlias, user, removed)
	})
	if errors.Is(err, msgstore.ErrMovedElsewhere) {
		// Another member's move of this group reached us while we sent.
		s.log.Warn("removegroupmember: the group was moved by someone else meanwhile", "alias", alias, "new", newAlias)
		return newAlias, nil
	}
	if err != nil {
		return "", fmt.Errorf("removegroupmember: %w", err)
	}
	return newAlias, nil
}
