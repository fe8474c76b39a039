package dm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// GetDirectMsgs is getdirectmsgs (spec §8.4): per query, the newest count
// messages with since_id < id <= max_id, in request order; conversations
// with nothing selected are omitted.
func (e *Engine) GetDirectMsgs(localUser string, count int, queries []msgstore.Query) ([]Thread, error) {
	var out []Thread
	err := e.store.View(func(tx *msgstore.Tx) error {
		for _, q := range queries {
			ms, err := tx.Messages(localUser, q, count)
			if err != nil {
				return err
			}
			if len(ms) > 0 {
				out = append(out, Thread{Username: q.Username, Messages: ms})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("getdirectmsgs %s: %w", localUser, err)
	}
	return out, nil
}

// Follow adds users to localUser's following list and starts their swarms.
// A name the registry does not know is not followed and, unlike twisterd
// (which reports success), named in a NotRegisteredError returned after the
// registered ones are followed: twister-html pushes its whole following
// list in one call, so one stale name must not keep the others out.
// Unlike twisterd, the stored DM posts of a newly followed user are
// processed again, so what the not-following rule dropped before is not
// lost (twisterd needs rescandirectmsgs).
func (e *Engine) Follow(ctx context.Context, localUser string, users []string) error {
	var known, unknown []string
	for _, u := range users {
		if u == "" {
			continue
		}
		_, err := e.keys.UserKey(ctx, u, -1)
		if errors.Is(err, twproto.ErrUnknownUser) {
			unknown = append(unknown, u)
			continue
		}
		if err != nil {
			return fmt.Errorf("follow %s: %w", u, err)
		}
		known = append(known, u)
	}
	var notReg error
	if len(unknown) > 0 {
		notReg = &NotRegisteredError{Users: unknown}
	}
	if len(known) == 0 {
		return notReg
	}
	var added []string
	err := e.store.Update(func(tx *msgstore.Tx) error {
		for _, u := range known {
			if !tx.IsFollowing(localUser, u) {
				added = append(added, u)
			}
		}
		return tx.Follow(localUser, known...)
	})
	if err != nil {
		return fmt.Errorf("follow: %w", err)
	}
	var errs []error
	for _, u := range known {
		if err := e.net.Follow(ctx, u); err != nil {
			errs = append(errs, fmt.Errorf("follow %s: %w", u, err))
		}
	}
	for _, u := range added {
		if err := e.rescanAuthor(ctx, u); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return notReg
	}
	return errors.Join(append(errs, notReg)...)
}

// NotRegisteredError names the users a follow left out because the
// registry does not know them; errors.Is(err, ErrNotRegistered) is true.
type NotRegisteredError struct{ Users []string }

func (e *NotRegisteredError) Error() string {
	q := make([]string, len(e.Users))
	for i, u := range e.Users {
		q[i] = "'" + u + "'"
	}
	if len(q) == 1 {
		return "follow: " + q[0] + " is not a registered user (not followed)"
	}
	return "follow: " + strings.Join(q, ", ") + " are not registered users (not followed)"
}

// Is makes errors.Is(err, ErrNotRegistered) true.
func (e *NotRegisteredError) Is(target error) bool { return target == ErrNotRegistered }

// Unfollow removes users from localUser's following list.
func (e *Engine) Unfollow(ctx context.Context, localUser string, users []string) error {
	if err := e.store.Update(func(tx *msgstore.Tx) error { return tx.Unfollow(localUser, users...) }); err != nil {
		return fmt.Errorf("unfollow: %w", err)
	}
	return nil
}

// Following lists whom localUser follows, sorted.
func (e *Engine) Following(localUser string) ([]string, error) {
	var out []string
	err := e.store.View(func(tx *msgstore.Tx) error { out = tx.Following(localUser); return nil })
	if err != nil {
		return nil, fmt.Errorf("following %s: %w", localUser, err)
	}
	return out, nil
}

// RegisterGroup stores a group key with its description, as creategroup's
// registerNewGroup(wif, desc, "", "", now, -1) (spec §6.5): a new key gets a
// fresh alias, and the posts no key could open so far are tried with it; a
// key already held as a group returns its alias untouched (twister-html
// imports keys with the description "whatever"). A key held by a local user
// gives "" like twisterd.
func (e *Engine) RegisterGroup(ctx context.Context, key *twproto.PrivateKey, desc string) (string, error) {
	defer e.hot()()
	var fx effects
	err := e.store.Update(func(tx *msgstore.Tx) error {
		fx = effects{}
		return e.registerGroup(tx, key.WIF(), desc, "", "", e.now().Unix(), -1, &fx)
	})
	if err != nil {
		return "", fmt.Errorf("register group: %w", err)
	}
	alias, _, err := e.wallet.AliasForKey(key)
	if err != nil {
		return "", fmt.Errorf("register group: %w", err)
	}
	e.after(ctx, fx)
	return alias, nil
}
