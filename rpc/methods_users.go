package rpc

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/twgroupd/twgroupd/internal/registry"
)

// UserLister is the optional part of the registry behind
// listusernamespartial: every registration it knows. *registry.File has it;
// a registry that reads an upstream twisterd does not, and then the method
// goes upstream, where the chain is.
type UserLister interface {
	Registrations(ctx context.Context) ([]registry.Registration, error)
}

// PrefixLister is the optional part of the registry that lists names by
// prefix itself (the chain source, whose user index is sorted).
type PrefixLister interface {
	UsersWithPrefix(ctx context.Context, prefix string, limit int) ([]string, error)
}

// listusernamespartial is twister-html's @-autocomplete (new group, invite
// peers, search box). As twisterd (src/twister.cpp): the users that local
// users follow come first (exact_match asks for the whole name there), then
// registered names with the prefix, until count; the result is a sorted set.
func (s *Server) listusernamespartial(ctx context.Context, p params) (any, error) {
	var prefix string
	var count int64
	exact := false
	if err := p.scan(&prefix, &count, &exact); err != nil {
		return nil, err
	}
	lister, _ := s.cfg.Registry.(UserLister)
	prefixer, _ := s.cfg.Registry.(PrefixLister)
	if lister == nil && prefixer == nil && s.cfg.Upstream != nil {
		return nil, noBackend("listusernamespartial", "user list")
	}
	// twisterd reads count into a size_t: a negative count has no limit.
	limit := int(count)
	if count < 0 || count > int64(math.MaxInt) {
		limit = math.MaxInt
	}
	found := map[string]bool{}
	if s.cfg.Wallet != nil && s.cfg.DM != nil {
		locals, err := s.cfg.Wallet.Users()
		if err != nil {
			return nil, fmt.Errorf("listusernamespartial: wallet users: %w", err)
		}
		for _, local := range locals {
			following, err := s.cfg.DM.Following(local)
			if err != nil {
				return nil, fmt.Errorf("listusernamespartial: following of %q: %w", local, err)
			}
			following = slices.Clone(following)
			sort.Strings(following) // twisterd's m_following is a std::set
			for _, u := range following {
				if (exact && len(u) != len(prefix)) || !strings.HasPrefix(u, prefix) {
					continue
				}
				found[u] = true
				if len(found) >= limit {
					break // as twisterd: this ends one user's list only
				}
			}
		}
	}
	if prefixer != nil && len(found) < limit {
		names, err := prefixer.UsersWithPrefix(ctx, prefix, limit)
		if err != nil {
			return nil, fmt.Errorf("listusernamespartial: %w", err)
		}
		for _, u := range names {
			if len(found) >= limit {
				break
			}
			found[u] = true
		}
	}
	if lister != nil {
		regs, err := lister.Registrations(ctx)
		if err != nil {
			return nil, fmt.Errorf("listusernamespartial: registrations: %w", err)
		}
		// twisterd walks its name index in key order from the prefix.
		names := make([]string, 0, len(regs))
		for _, r := range regs {
			if strings.HasPrefix(r.User, prefix) {
				names = append(names, r.User)
			}
		}
		sort.Strings(names)
		for _, u := range names {
			if len(found) >= limit {
				break
			}
			found[u] = true
		}
	}
	out := make([]string, 0, len(found))
	for u := range found {
		out = append(out, u)
	}
	sort.Strings(out)
	return out, nil
}
