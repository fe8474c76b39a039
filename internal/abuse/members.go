package abuse

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// The member-list attack (issue #11, docs/rpc.md "Limits"): one real
// member of a group posts a group_members list, signed with its own key
// and encrypted to the group key, that names users the victim should not
// start swarms for. The victim's node follows a member only when it is a
// registered user, at most dm.MaxGroupFollows per group, and again at
// start only under the same rules.

// Caller is a JSON-RPC client of the victim; *upstream.Client is one.
type Caller interface {
	Call(ctx context.Context, method string, params ...any) (json.RawMessage, error)
}

// GroupMembersPost builds piece k of member's swarm: a DM to the group's
// public key whose payload is {"group_members": names}, signed by
// memberKey at the given block height (spec §3.2, §6.5).
func GroupMembersPost(memberKey *twproto.PrivateKey, member string, k, height int64, groupPub []byte, names []string, now time.Time) ([]byte, error) {
	env, err := twproto.Encrypt(groupPub, twproto.EncodeGroupMembers(names))
	if err != nil {
		return nil, fmt.Errorf("abuse: encrypt member list: %w", err)
	}
	post, err := twproto.BuildDMPost(memberKey, member, k, height, now.Unix(), env)
	if err != nil {
		return nil, fmt.Errorf("abuse: member list post: %w", err)
	}
	return post, nil
}

// MemberListConfig: the victim's local user Local creates a group and
// invites Member (a registered user whose key the attacker holds, and
// whom Local follows); Member then posts one member list naming Ghosts
// (unregistered) and Registered (registered users nobody follows).
type MemberListConfig struct {
	Victim     Caller
	Local      string              // a wallet user of the victim
	LocalK     int64               // Local's next free piece number
	Member     string              // the hostile member
	MemberKey  *twproto.PrivateKey // its key (e.g. from its own node's dumpprivkey)
	Ghosts     []string            // unregistered names
	Registered []string            // registered names; at most 400 names in all (10 posts)
	Height     int64               // the post's block height (the best height, or one less)
	// Restart, when set, stops and starts the victim (same data directory);
	// it returns the new client.
	Restart func(ctx context.Context) (Caller, error)
	Timeout time.Duration // the whole run (default 60 s)
}

// MemberListResult counts the named users whose swarm the victim runs.
type MemberListResult struct {
	Ghosts, Registered int // names in the list
	Posts              int // member-list posts it took
	// Before the post, once it was processed, and after a restart
	// (-1: no restart asked).
	GhostsBefore, GhostsAfter, GhostsRestart int
	RegBefore, RegAfter, RegRestart          int
	Elapsed                                  time.Duration
}

func (r MemberListResult) String() string {
	return fmt.Sprintf("member list: %d unregistered and %d registered names in %d posts; unregistered followed %d -> %d (after restart %d), registered followed %d -> %d (after restart %d), %v",
		r.Ghosts, r.Registered, r.Posts, r.GhostsBefore, r.GhostsAfter, r.GhostsRestart, r.RegBefore, r.RegAfter, r.RegRestart, r.Elapsed.Round(time.Millisecond))
}

// membersPerPost keeps one member-list post under twproto.MaxPostSize
// (names of up to 16 bytes, the ECIES envelope and the signature).
const membersPerPost = 40

// MemberList runs the member-list attack.
func MemberList(ctx context.Context, cfg MemberListConfig) (MemberListResult, error) {
	res := MemberListResult{GhostsRestart: -1, RegRestart: -1}
	if cfg.Victim == nil || cfg.MemberKey == nil || len(cfg.Ghosts)+len(cfg.Registered) > 400 {
		return res, errors.New("abuse: member list: victim, member key and at most 400 names needed")
	}
	res.Ghosts, res.Registered = len(cfg.Ghosts), len(cfg.Registered)
	ctx, cancel := withBound(ctx, bound(cfg.Timeout, 60*time.Second))
	defer cancel()
	start := time.Now()
	v := cfg.Victim
	call := func(method string, params ...any) (json.RawMessage, error) {
		r, err := v.Call(ctx, method, params...)
		if err != nil {
			return nil, fmt.Errorf("abuse: member list: %s: %w", method, err)
		}
		return r, nil
	}

	// The group: Local creates it and invites itself and Member, and
	// follows Member (so the victim runs Member's swarm).
	raw, err := call("creategroup", "abuse-members")
	if err != nil {
		return res, err
	}
	var alias string
	if err := json.Unmarshal(raw, &alias); err != nil {
		return res, fmt.Errorf("abuse: creategroup answer %s: %w", raw, err)
	}
	if _, err := call("newgroupinvite", cfg.Local, cfg.LocalK, alias, []string{cfg.Local, cfg.Member}); err != nil {
		return res, err
	}
	if _, err := call("follow", cfg.Local, []string{cfg.Member}); err != nil {
		return res, err
	}
	// The invite gave Member the group's key; the attacker has it too.
	var wif string
	if raw, err = call("dumpprivkey", alias); err != nil {
		return res, err
	}
	json.Unmarshal(raw, &wif)
	gk, err := twproto.ParseWIF(wif)
	if err != nil {
		return res, fmt.Errorf("abuse: group key: %w", err)
	}

	// Whether the victim runs a user's swarm: newpostraw of a piece that
	// is not a post answers -8 "holds no swarm" before it validates
	// anything, and a validation error (nothing stored) when it does.
	held := func(v Caller, user string) (bool, error) {
		_, err := v.Call(ctx, "newpostraw", user, 0, "00")
		if err == nil {
			return false, fmt.Errorf("abuse: member list: probe piece for %s accepted", user)
		}
		if strings.Contains(err.Error(), "holds no swarm") {
			return false, nil
		}
		if strings.Contains(err.Error(), "-32602") || strings.Contains(err.Error(), "already used") {
			return true, nil
		}
		return false, fmt.Errorf("abuse: member list: probe %s: %w", user, err)
	}
	count := func(v Caller) (ghosts, reg int, err error) {
		for _, u := range cfg.Ghosts {
			h, err := held(v, u)
			if err != nil {
				return 0, 0, err
			}
			if h {
				ghosts++
			}
		}
		for _, u := range cfg.Registered {
			h, err := held(v, u)
			if err != nil {
				return 0, 0, err
			}
			if h {
				reg++
			}
		}
		return ghosts, reg, nil
	}
	if res.GhostsBefore, res.RegBefore, err = count(v); err != nil {
		return res, err
	}

	// The list, ghosts first (they must not use up the cap), in as many
	// of the member's pieces (0, 1, ...) as a post's size limit needs.
	names := append(append([]string(nil), cfg.Ghosts...), cfg.Registered...)
	for k, rest := int64(0), names; len(rest) > 0; k++ {
		chunk := rest[:min(len(rest), membersPerPost)]
		rest = rest[len(chunk):]
		post, err := GroupMembersPost(cfg.MemberKey, cfg.Member, k, cfg.Height, gk.PubKey(), chunk, time.Now())
		if err != nil {
			return res, err
		}
		if _, err := call("newpostraw", cfg.Member, k, hex.EncodeToString(post)); err != nil {
			return res, err
		}
		res.Posts++
	}
	// Processed once the group's member list holds the names.
	for {
		raw, err := call("getgroupinfo", alias)
		if err != nil {
			return res, err
		}
		var info struct {
			Members []string `json:"members"`
		}
		json.Unmarshal(raw, &info)
		if containsAll(info.Members, names) {
			break
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("abuse: member list never processed (%d members): %w", len(info.Members), ctx.Err())
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	if res.GhostsAfter, res.RegAfter, err = count(v); err != nil {
		return res, err
	}
	if cfg.Restart != nil {
		if v, err = cfg.Restart(ctx); err != nil {
			return res, fmt.Errorf("abuse: member list: restart: %w", err)
		}
		// Resume follows group members after the RPC answers: give it
		// until the registered count stops growing.
		last := -1
		for stable := 0; stable < 5 && ctx.Err() == nil; {
			g, r, err := count(v)
			if err != nil {
				return res, err
			}
			res.GhostsRestart, res.RegRestart = g, r
			if r == last {
				stable++
			} else {
				stable, last = 0, r
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

func containsAll(have, want []string) bool {
	set := make(map[string]bool, len(have))
	for _, h := range have {
		set[h] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}
