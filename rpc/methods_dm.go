package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"

	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/tjson"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// Direct-message and group-chat methods (spec §5, §6.5, §8.4).

func (s *Server) newdirectmsg(ctx context.Context, p params) (any, error) {
	var from, to, msg string
	var k postK
	copySelf := false
	if err := p.scan(&from, &k, &to, &msg, &copySelf); err != nil {
		return nil, err
	}
	if s.cfg.DM == nil {
		return nil, noBackend("newdirectmsg", "DM engine")
	}
	post, err := s.cfg.DM.NewDirectMsg(ctx, from, int64(k), to, msg, copySelf)
	if err != nil {
		return nil, err
	}
	return hexcapedPost(post)
}

func hexcapedPost(raw []byte) (json.RawMessage, error) {
	out, err := twproto.HexcapePost(raw)
	if err != nil {
		return nil, fmt.Errorf("render post: %w", err)
	}
	return out, nil
}

// queries parses getdirectmsgs' and getposts' array of
// {"username","max_id","since_id"}; missing ids take twisterd's defaults,
// unknown keys are ignored, and a later duplicate key wins as in twisterd's
// loop over the object.
func queries(raw []json.RawMessage) ([]msgstore.Query, error) {
	out := make([]msgstore.Query, 0, len(raw))
	for _, elem := range raw {
		members, err := rawObject(elem)
		if err != nil {
			return nil, err
		}
		q := msgstore.Query{MaxID: math.MaxInt32, SinceID: -1}
		for _, m := range members {
			switch m.Key {
			case "username":
				if q.Username, err = rawString(m.Value); err != nil {
					return nil, err
				}
			case "max_id":
				if q.MaxID, err = rawInt(m.Value); err != nil {
					return nil, err
				}
			case "since_id":
				if q.SinceID, err = rawInt(m.Value); err != nil {
					return nil, err
				}
			}
		}
		// twisterd skips entries without a username.
		if q.Username != "" {
			out = append(out, q)
		}
	}
	return out, nil
}

func (s *Server) getdirectmsgs(_ context.Context, p params) (any, error) {
	var localUser string
	var count int64
	var elems []json.RawMessage
	if err := p.scan(&localUser, &count, &elems); err != nil {
		return nil, err
	}
	qs, err := queries(elems)
	if err != nil {
		return nil, err
	}
	if s.cfg.DM == nil {
		return nil, noBackend("getdirectmsgs", "DM engine")
	}
	threads, err := s.cfg.DM.GetDirectMsgs(localUser, int(count), qs)
	if err != nil {
		return nil, err
	}
	// Keys in request order; empty threads omitted (spec §8.4).
	result := tjson.Object{}
	for _, th := range threads {
		if len(th.Messages) == 0 {
			continue
		}
		msgs := make([]any, 0, len(th.Messages))
		for _, m := range th.Messages {
			msgs = append(msgs, tjson.Object{
				{Key: "id", Value: m.ID},
				{Key: "time", Value: m.Time},
				{Key: "text", Value: m.Text},
				{Key: "fromMe", Value: m.FromMe},
				{Key: "from", Value: m.From},
				{Key: "k", Value: m.K},
			})
		}
		result = append(result, tjson.Field{Key: th.Username, Value: msgs})
	}
	return result, nil
}

func (s *Server) rescandirectmsgs(ctx context.Context, p params) (any, error) {
	var user string
	if err := p.scan(&user); err != nil {
		return nil, err
	}
	if s.cfg.DM == nil {
		return nil, noBackend("rescandirectmsgs", "DM engine")
	}
	return nil, s.cfg.DM.Rescan(ctx, user)
}

func (s *Server) creategroup(ctx context.Context, p params) (any, error) {
	var desc, wif string
	if err := p.scan(&desc, &wif); err != nil {
		return nil, err
	}
	if s.cfg.Groups == nil {
		return nil, noBackend("creategroup", "group-chat service")
	}
	if !p.has(1) {
		// Without a key twisterd makes a new compressed one (spec §6.5).
		key, err := twproto.NewPrivateKey()
		if err != nil {
			return nil, fmt.Errorf("creategroup: new key: %w", err)
		}
		wif = key.WIF()
	}
	// An invalid key is refused (twisterd answers "" and no error).
	return s.cfg.Groups.Create(ctx, desc, wif)
}

func (s *Server) listgroups(_ context.Context, p params) (any, error) {
	var user string
	var onlyIgnored, includeMoved bool
	if err := p.scan(&user, &onlyIgnored, &includeMoved); err != nil {
		return nil, err
	}
	if s.cfg.Groups == nil {
		return nil, noBackend("listgroups", "group-chat service")
	}
	list := s.cfg.Groups.List
	if r := s.groupRemover(); includeMoved && !onlyIgnored && r != nil {
		list = func(user string, _ bool) ([]string, error) { return r.ListWithMoved(user) }
	}
	groups, err := list(user, onlyIgnored)
	if err != nil {
		return nil, err
	}
	return nonNil(groups), nil
}

func (s *Server) getgroupinfo(_ context.Context, p params) (any, error) {
	var alias string
	if err := p.scan(&alias); err != nil {
		return nil, err
	}
	if s.cfg.Groups == nil {
		return nil, noBackend("getgroupinfo", "group-chat service")
	}
	info, err := s.cfg.Groups.Info(alias)
	if err != nil {
		return nil, err
	}
	members := append([]string{}, info.Members...)
	sort.Strings(members) // a std::set in twisterd
	return appendMoveInfo(tjson.Object{
		{Key: "alias", Value: alias},
		{Key: "description", Value: info.Description},
		{Key: "members", Value: members},
	}, info), nil
}

func (s *Server) newgroupinvite(ctx context.Context, p params) (any, error) {
	var user, alias string
	var k postK
	var members []string
	if err := p.scan(&user, &k, &alias, &members); err != nil {
		return nil, err
	}
	if s.cfg.Groups == nil {
		return nil, noBackend("newgroupinvite", "group-chat service")
	}
	return nil, s.cfg.Groups.Invite(ctx, user, int64(k), alias, members)
}

func (s *Server) newgroupdescription(ctx context.Context, p params) (any, error) {
	var user, alias, desc string
	var k postK
	if err := p.scan(&user, &k, &alias, &desc); err != nil {
		return nil, err
	}
	if s.cfg.Groups == nil {
		return nil, noBackend("newgroupdescription", "group-chat service")
	}
	return nil, s.cfg.Groups.SetDescription(ctx, user, int64(k), alias, desc)
}

func (s *Server) leavegroup(ctx context.Context, p params) (any, error) {
	var user, alias string
	if err := p.scan(&user, &alias); err != nil {
		return nil, err
	}
	if s.cfg.Groups == nil {
		return nil, noBackend("leavegroup", "group-chat service")
	}
	return nil, s.cfg.Groups.Leave(ctx, user, alias)
}

// nonNil makes a nil list render as [] rather than null.
func nonNil(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}
