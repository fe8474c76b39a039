package msgstore

import (
	"errors"
	"fmt"
)

// A group moved by removegroupmember keeps its record and history; these
// keys in its bucket say where it went (docs/engine.md "Removing a member"):
//
//	groups/<old>/movedto -> new alias, groups/<old>/movedby -> user,
//	groups/<old>/removed/<name>, groups/<new>/movedfrom -> old alias
var (
	keyMovedTo   = []byte("movedto")
	keyMovedBy   = []byte("movedby")
	keyMovedFrom = []byte("movedfrom")
	bktRemoved   = []byte("removed")
)

// Move is what the store knows of a group's move.
type Move struct {
	To, By  string   // new alias, who moved it ("" when not moved)
	Removed []string // sorted
	From    string   // for a new group: the alias it replaces
}

// GroupMove reports alias's move record (zero Move if none).
func (t *Tx) GroupMove(alias string) Move {
	gb := t.tx.Bucket(bktGroups).Bucket([]byte(alias))
	if gb == nil {
		return Move{}
	}
	return Move{
		To:      string(gb.Get(keyMovedTo)),
		By:      string(gb.Get(keyMovedBy)),
		Removed: bucketKeys(gb.Bucket(bktRemoved)),
		From:    string(gb.Get(keyMovedFrom)),
	}
}

// SetGroupMoved records that old moved to new, by by, leaving removed
// out; new records where it came from. A group already moved elsewhere
// keeps its first move (ErrMovedElsewhere).
func (t *Tx) SetGroupMoved(old, new, by string, removed []string) error {
	if old == new || new == "" {
		return errors.New("group cannot move to itself")
	}
	ob, err := t.groupBucket(old)
	if err != nil {
		return err
	}
	if to := ob.Get(keyMovedTo); to != nil && string(to) != new {
		return ErrMovedElsewhere
	}
	if err := ob.Put(keyMovedTo, []byte(new)); err != nil {
		return fmt.Errorf("group %q move: %w", old, err)
	}
	if err := ob.Put(keyMovedBy, []byte(by)); err != nil {
		return fmt.Errorf("group %q move: %w", old, err)
	}
	rb, err := ob.CreateBucketIfNotExists(bktRemoved)
	if err != nil {
		return fmt.Errorf("group %q move: %w", old, err)
	}
	for _, r := range removed {
		if r == "" {
			continue
		}
		if err := rb.Put([]byte(r), nil); err != nil {
			return fmt.Errorf("group %q move: %w", old, err)
		}
	}
	nb, err := t.groupBucket(new)
	if err != nil {
		return err
	}
	if err := nb.Put(keyMovedFrom, []byte(old)); err != nil {
		return fmt.Errorf("group %q move: %w", new, err)
	}
	return nil
}

// ErrMovedElsewhere: the group already moved to another alias.
var ErrMovedElsewhere = errors.New("group already moved to another group")
