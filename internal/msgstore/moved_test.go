package msgstore

import (
	"errors"
	"slices"
	"testing"
)

func TestGroupMove(t *testing.T) {
	s, path := openTemp(t, nil)
	err := s.Update(func(tx *Tx) error {
		if _, err := tx.AddGroupMember("*old", "alice"); err != nil {
			return err
		}
		if err := tx.SetGroupMoved("*old", "*old", "alice", nil); err == nil {
			t.Error("moved to itself")
		}
		if err := tx.SetGroupMoved("*old", "*new", "alice", []string{"carol", "", "bob"}); err != nil {
			return err
		}
		if err := tx.SetGroupMoved("*old", "*new", "alice", nil); err != nil {
			t.Errorf("same move again: %v", err)
		}
		if err := tx.SetGroupMoved("*old", "*other", "bob", nil); !errors.Is(err, ErrMovedElsewhere) {
			t.Errorf("second move: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.View(func(tx *Tx) error {
		mv := tx.GroupMove("*old")
		if mv.To != "*new" || mv.By != "alice" || !slices.Equal(mv.Removed, []string{"bob", "carol"}) || mv.From != "" {
			t.Errorf("old %+v", mv)
		}
		if mv := tx.GroupMove("*new"); mv.From != "*old" || mv.To != "" {
			t.Errorf("new %+v", mv)
		}
		if mv := tx.GroupMove("*none"); mv.To != "" || mv.From != "" {
			t.Errorf("unknown %+v", mv)
		}
		if g, _ := tx.Group("*old"); !slices.Equal(g.Members, []string{"alice"}) {
			t.Errorf("members %v", g.Members)
		}
		return nil
	})
}
