package rpc

import (
	"context"
	"errors"

	"github.com/twgroupd/twgroupd/groupchat"
	"github.com/twgroupd/twgroupd/internal/tjson"
)

// Group moves (removegroupmember; docs/rpc.md, docs/engine.md "Removing a
// member"). Kept out of GroupService so its other implementations need not
// change.

// GroupRemover is the part of *groupchat.Service behind removegroupmember
// and listgroups' include_moved.
type GroupRemover interface {
	Remove(ctx context.Context, user string, k int64, alias string, removed []string) (newAlias string, err error)
	ListWithMoved(user string) ([]string, error)
}

func (s *Server) groupRemover() GroupRemover {
	r, _ := s.cfg.Groups.(GroupRemover)
	return r
}

func (s *Server) removegroupmember(ctx context.Context, p params) (any, error) {
	var user, alias string
	var k postK
	var removed []string
	if err := p.scan(&user, &k, &alias, &removed); err != nil {
		return nil, err
	}
	r := s.groupRemover()
	if r == nil {
		return nil, noBackend("removegroupmember", "group-chat service")
	}
	newAlias, err := r.Remove(ctx, user, int64(k), alias, removed)
	if err != nil {
		return nil, removeError(err)
	}
	return newAlias, nil
}

// removeError gives the refusals of a removal -8 with their own text; the
// rest (unknown alias, k used, encryption) map as for the other group
// methods.
func removeError(err error) error {
	for _, target := range []error{groupchat.ErrNotMember, groupchat.ErrRemoveAll, groupchat.ErrNoneToRemove, groupchat.ErrGroupMoved} {
		if errors.Is(err, target) {
			return &Error{Code: CodeInvalidParameter, Message: err.Error()}
		}
	}
	return err
}

// appendMoveInfo adds getgroupinfo's twgroupd fields, after twisterd's
// (twister-html reads only alias, description and members): "moved" for a
// group moved by removegroupmember, "movedfrom" for the group replacing it.
func appendMoveInfo(obj tjson.Object, info GroupInfo) tjson.Object {
	if m := info.Moved; m != nil {
		obj = append(obj, tjson.Field{Key: "moved", Value: tjson.Object{
			{Key: "to", Value: m.To},
			{Key: "by", Value: m.By},
			{Key: "removed", Value: nonNil(m.Removed)},
			{Key: "leftbehind", Value: nonNil(m.LeftBehind)},
		}})
	}
	if info.MovedFrom != "" {
		obj = append(obj, tjson.Field{Key: "movedfrom", Value: info.MovedFrom})
	}
	return obj
}
