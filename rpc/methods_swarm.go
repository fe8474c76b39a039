package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/internal/tjson"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// Following and swarm methods (spec §8.4, §9.2).

func (s *Server) follow(ctx context.Context, p params) (any, error) {
	localUser, users, err := userAndList(p)
	if err != nil {
		return nil, err
	}
	if s.cfg.DM == nil {
		return nil, noBackend("follow", "DM engine")
	}
	err = s.cfg.DM.Follow(ctx, localUser, users)
	var nr *dm.NotRegisteredError
	if errors.As(err, &nr) {
		// The registered names were followed: mirror those.
		users = slices.DeleteFunc(slices.Clone(users), func(u string) bool { return slices.Contains(nr.Users, u) })
	} else if err != nil {
		return nil, err
	}
	if len(users) > 0 {
		s.mirrorUpstream(ctx, "follow", localUser, users)
	}
	return nil, err
}

func (s *Server) unfollow(ctx context.Context, p params) (any, error) {
	localUser, users, err := userAndList(p)
	if err != nil {
		return nil, err
	}
	if s.cfg.DM == nil {
		return nil, noBackend("unfollow", "DM engine")
	}
	if err := s.cfg.DM.Unfollow(ctx, localUser, users); err != nil {
		return nil, err
	}
	s.mirrorUpstream(ctx, "unfollow", localUser, users)
	return nil, nil
}

// mirrorUpstream repeats a follow or unfollow on the upstream twisterd, so
// its public timeline follows the same users as our DMs (twister-html sends
// follow to us only). It does so only for a localUser twisterd's wallet
// holds: twisterd's follow takes any name and would make an entry for a
// user it has no key for. Ours is the answer: an upstream failure is
// logged, never reported, since the local change has been made.
func (s *Server) mirrorUpstream(ctx context.Context, method, localUser string, users []string) {
	if s.cfg.Upstream == nil {
		return
	}
	held, err := s.upstreamHolds(ctx, localUser)
	if err != nil {
		s.log.Warn("upstream twisterd: listwalletusers failed, "+method+" not repeated there", "user", localUser, "err", err)
		return
	}
	if !held {
		s.log.Debug(method+" not repeated on the upstream twisterd: it holds no key for the user", "user", localUser)
		return
	}
	body, err := tjson.Marshal(tjson.Object{
		{Key: "id", Value: "twgroupd-mirror"},
		{Key: "method", Value: method},
		{Key: "params", Value: []any{localUser, users}},
	})
	if err != nil {
		return
	}
	status, _, reply, err := s.cfg.Upstream.Forward(ctx, body)
	if err != nil || status != http.StatusOK {
		s.log.Warn("upstream twisterd did not take the "+method, "user", localUser, "status", status, "err", err, "reply_bytes", len(reply))
	}
}

// upstreamHolds asks the upstream twisterd whether user is in its wallet.
func (s *Server) upstreamHolds(ctx context.Context, user string) (bool, error) {
	status, _, reply, err := s.cfg.Upstream.Forward(ctx, []byte(`{"id":"twgroupd-mirror","method":"listwalletusers","params":[]}`))
	if err != nil {
		return false, err
	}
	var r struct {
		Result []string `json:"result"`
	}
	if status != http.StatusOK || json.Unmarshal(reply, &r) != nil {
		return false, fmt.Errorf("listwalletusers: HTTP %d", status)
	}
	return slices.Contains(r.Result, user), nil
}

func userAndList(p params) (user string, list []string, err error) {
	err = p.scan(&user, &list)
	return user, list, err
}

func (s *Server) getfollowing(_ context.Context, p params) (any, error) {
	var localUser string
	if err := p.scan(&localUser); err != nil {
		return nil, err
	}
	if s.cfg.DM == nil {
		return nil, noBackend("getfollowing", "DM engine")
	}
	users, err := s.cfg.DM.Following(localUser)
	if err != nil {
		return nil, err
	}
	return nonNil(users), nil
}

// followingSet is the sorted, de-duplicated user list twisterd iterates
// (a std::set): the given array, else whom localUser follows.
func (s *Server) followingSet(method, localUser string, given []string, haveGiven bool) ([]string, error) {
	var users []string
	if haveGiven {
		users = append(users, given...)
	} else {
		if s.cfg.DM == nil {
			return nil, noBackend(method, "DM engine")
		}
		var err error
		if users, err = s.cfg.DM.Following(localUser); err != nil {
			return nil, err
		}
	}
	sort.Strings(users)
	out := users[:0]
	for i, u := range users {
		if i == 0 || u != users[i-1] {
			out = append(out, u)
		}
	}
	return out, nil
}

func (s *Server) getlasthave(_ context.Context, p params) (any, error) {
	var localUser string
	var given []string
	if err := p.scan(&localUser, &given); err != nil {
		return nil, err
	}
	if s.cfg.Swarm == nil {
		return nil, noBackend("getlasthave", "swarm")
	}
	users, err := s.followingSet("getlasthave", localUser, given, p.has(1))
	if err != nil {
		return nil, err
	}
	result := make(tjson.Object, 0, len(users))
	for _, u := range users {
		result = append(result, tjson.Field{Key: u, Value: s.cfg.Swarm.LastHave(u)})
	}
	return result, nil
}

func (s *Server) getnumpieces(_ context.Context, p params) (any, error) {
	var localUser string
	if err := p.scan(&localUser); err != nil {
		return nil, err
	}
	if s.cfg.Swarm == nil {
		return nil, noBackend("getnumpieces", "swarm")
	}
	users, err := s.followingSet("getnumpieces", localUser, nil, false)
	if err != nil {
		return nil, err
	}
	result := make(tjson.Object, 0, len(users))
	for _, u := range users {
		result = append(result, tjson.Field{Key: u, Value: s.cfg.Swarm.NumPieces(u)})
	}
	return result, nil
}

func (s *Server) getpiecemaxseen(_ context.Context, p params) (any, error) {
	var user string
	var k int64
	if err := p.scan(&user, &k); err != nil {
		return nil, err
	}
	if s.cfg.Swarm == nil {
		return nil, noBackend("getpiecemaxseen", "swarm")
	}
	return s.cfg.Swarm.PieceMaxSeen(user, k), nil
}

func (s *Server) getposts(ctx context.Context, p params) (any, error) {
	var count int64
	var elems []json.RawMessage
	allowed, required := int64(twproto.FlagHome), int64(0)
	if err := p.scan(&count, &elems, &allowed, &required); err != nil {
		return nil, err
	}
	qs, err := queries(elems)
	if err != nil {
		return nil, err
	}
	if s.cfg.Swarm == nil {
		return nil, noBackend("getposts", "swarm")
	}
	posts, err := s.cfg.Swarm.Posts(ctx, int(count), qs, int(allowed), int(required))
	if err != nil {
		return nil, err
	}
	result := make([]json.RawMessage, 0, len(posts))
	for _, raw := range posts {
		if int64(len(result)) >= count {
			break
		}
		post, err := hexcapedPost(raw)
		if err != nil {
			return nil, err
		}
		result = append(result, post)
	}
	return result, nil
}
