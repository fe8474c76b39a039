package dm

import (
	"errors"

	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// linkMovedGroup applies the "moved" dict of a group_invite sent to a
// member (removegroupmember, docs/engine.md "Removing a member"): the old
// group, found by its key id among this node's group keys, is marked as
// moved to the invite's group. Only a sender that is a member of the old
// group on this node can move it, and the first move of a group wins; any
// other case leaves the invite an ordinary one, as twisterd sees it.
func (e *Engine) linkMovedGroup(tx *msgstore.Tx, pl twproto.Payload, member, invitedBy string) error {
	if pl.Moved == nil || wallet.IsGroupAlias(member) {
		return nil
	}
	key, err := twproto.ParseWIF(pl.InviteKey)
	if err != nil {
		return nil
	}
	newAlias, ok, err := e.wallet.AliasForKey(key)
	if err != nil || !ok {
		return err
	}
	names, keys, err := e.walletKeys()
	if err != nil {
		return err
	}
	old := ""
	for i, k := range keys {
		if wallet.IsGroupAlias(names[i]) && twproto.Hash160(k.PubKey()) == pl.Moved.From {
			old = names[i]
			break
		}
	}
	if old == "" || old == newAlias {
		return nil
	}
	if _, recorded := tx.Group(old); !recorded || !tx.IsGroupMember(old, invitedBy) {
		e.log.Info("group move ignored: sender not a member of the old group", "from", invitedBy, "old", old)
		return nil
	}
	err = tx.SetGroupMoved(old, newAlias, invitedBy, pl.Moved.Removed)
	if errors.Is(err, msgstore.ErrMovedElsewhere) {
		e.log.Info("group move ignored: group already moved", "old", old, "new", newAlias, "by", invitedBy)
		return nil
	}
	if err == nil {
		e.log.Info("group moved", "old", old, "new", newAlias, "by", invitedBy)
	}
	return err
}
