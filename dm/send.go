package dm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// Outgoing is one DM post to create: Payload sealed to the key of To.
type Outgoing struct {
	To      string // wallet name (user or group alias) or registered user
	Payload []byte
	// EncryptErr is returned when To has no usable key
	// (ErrEncryptToDest if nil).
	EncryptErr error
}

// localCopy is the sender's own copy of a message sent without copy_self
// (spec §5.2 step 4.3).
type localCopy struct {
	user, peer string
	msg        msgstore.Message
}

// NewDirectMsg is newdirectmsg (spec §5.2): msg to a user or to a group
// alias, as post k of from (k and k+1 with copySelf, in random order). It
// returns the last post created. A k already used by from is refused with
// a KUsedError, and a call that fails consumes no k unless a post was
// already published.
func (e *Engine) NewDirectMsg(ctx context.Context, from string, k int64, to, msg string, copySelf bool) ([]byte, error) {
	if msg == "" {
		return nil, ErrEmptyMessage
	}
	payload := twproto.EncodeMessage(msg, to)
	outs := []Outgoing{{To: to, Payload: payload, EncryptErr: ErrEncryptToDest}}
	if copySelf {
		outs = append(outs, Outgoing{To: from, Payload: payload, EncryptErr: ErrEncryptToSelf})
	}
	// Encrypt in twisterd's order, so its errors come in its order.
	envs, err := e.seal(ctx, outs)
	if err != nil {
		return nil, err
	}
	var local *localCopy
	now := e.now().Unix()
	if copySelf {
		// twisterd: rand() < RAND_MAX/2 puts the recipient copy first.
		if rand.IntN(2) == 0 {
			envs[0], envs[1] = envs[1], envs[0]
		}
	} else {
		local = &localCopy{user: from, peer: to, msg: msgstore.Message{
			Time: now, Text: msg, FromMe: true, From: from, K: k,
		}}
	}
	posts, err := e.publish(ctx, from, k, now, envs, local)
	if err != nil {
		return nil, err
	}
	return posts[len(posts)-1], nil
}

// Send creates, publishes and processes one post per Outgoing, as posts k,
// k+1, ... of from (the group operations of package groupchat). It returns
// the posts. All encryption, signing and validation happen before anything
// is stored or published.
func (e *Engine) Send(ctx context.Context, from string, k int64, outs []Outgoing) ([][]byte, error) {
	if len(outs) == 0 {
		return nil, nil
	}
	envs, err := e.seal(ctx, outs)
	if err != nil {
		return nil, err
	}
	return e.publish(ctx, from, k, e.now().Unix(), envs, nil)
}

// recipientKey picks the key to encrypt to: the wallet's (local users and
// group aliases), else the registered one at the best height (spec §4.4).
// Its error says, for a client, why there is no key.
func (e *Engine) recipientKey(ctx context.Context, to string) ([]byte, error) {
	key, werr := e.wallet.Key(to)
	if werr == nil {
		return key.PubKey(), nil
	}
	if wallet.IsGroupAlias(to) {
		if errors.Is(werr, wallet.ErrUserNotFound) {
			return nil, fmt.Errorf("unknown group alias '%s'", to)
		}
		return nil, werr
	}
	uk, err := e.keys.UserKey(ctx, to, -1)
	if errors.Is(err, twproto.ErrUnknownUser) {
		return nil, fmt.Errorf("'%s' is not a registered user", to)
	}
	if err != nil {
		return nil, fmt.Errorf("no key for '%s': %w", to, err)
	}
	return uk.PubKey, nil
}

func (e *Engine) seal(ctx context.Context, outs []Outgoing) ([]*twproto.Envelope, error) {
	envs := make([]*twproto.Envelope, len(outs))
	for i, o := range outs {
		encErr := o.EncryptErr
		if encErr == nil {
			encErr = ErrEncryptToDest
		}
		pub, err := e.recipientKey(ctx, o.To)
		if err != nil {
			e.log.Debug("no key to encrypt to", "to", o.To, "err", err)
			return nil, &CulpritError{Err: encErr, Detail: ": " + err.Error()}
		}
		if len(o.Payload) > twproto.MaxPostSize {
			// It cannot fit in a post: say so now rather than after
			// encrypting megabytes (twisterd fails later, same message).
			return nil, &twproto.PostError{Msg: "bad bencoded post size"}
		}
		env, err := twproto.Encrypt(pub, o.Payload)
		if err != nil {
			e.log.Debug("encrypt failed", "to", o.To, "err", err)
			return nil, encErr
		}
		envs[i] = env
	}
	return envs, nil
}

// publish builds, signs and validates one post per envelope, records them
// (reserving their ks) with the local copy in one transaction, publishes
// them in order and processes them as received. On a publish failure the
// unpublished posts are forgotten again, and the local copy too if nothing
// went out.
func (e *Engine) publish(ctx context.Context, from string, k, now int64, envs []*twproto.Envelope, local *localCopy) ([][]byte, error) {
	key, err := e.wallet.Key(from)
	if errors.Is(err, wallet.ErrUserNotFound) {
		return nil, Culprit(ErrSign, "'%s' is not a user of this wallet", from)
	}
	if err != nil {
		return nil, &CulpritError{Err: ErrSign, Detail: ": " + err.Error()}
	}
	if pc, ok := e.net.(PieceChecker); ok {
		for i := range envs {
			if kk := k + int64(i); pc.HasPiece(from, kk) {
				return nil, fmt.Errorf("send as %s: %w", from, &KUsedError{User: from, K: kk})
			}
		}
	}
	best, err := e.keys.BestHeight(ctx)
	if err != nil {
		return nil, fmt.Errorf("best height: %w", err)
	}
	height := max(best-1, 0) // twisterd: best-1, "be conservative"
	raws := make([][]byte, len(envs))
	posts := make([]*twproto.Post, len(envs))
	for i, env := range envs {
		kk := k + int64(i)
		raw, err := twproto.BuildDMPost(key, from, kk, height, now, env)
		if err != nil {
			var pe *twproto.PostError
			if errors.As(err, &pe) {
				return nil, err
			}
			return nil, ErrSign
		}
		p, err := twproto.ValidatePost(ctx, raw, from, kk, e.keys)
		if err != nil {
			return nil, err
		}
		raws[i], posts[i] = raw, p
	}

	var localID int64
	err = e.store.Update(func(tx *msgstore.Tx) error {
		for i := range posts {
			ref := msgstore.PostRef{Author: from, K: k + int64(i)}
			if tx.HasPost(ref) {
				return &KUsedError{User: from, K: ref.K}
			}
			if _, err := tx.PutPost(ref, raws[i]); err != nil {
				return err
			}
		}
		if local != nil {
			m, _, err := tx.AddMessage(local.user, local.peer, dedupKey(from, k, "msg"), local.msg)
			localID = m.ID
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("send as %s: %w", from, err)
	}

	published := 0
	var pubErr error
	for i, raw := range raws {
		if err := e.net.Publish(ctx, from, k+int64(i), raw); err != nil {
			pubErr = fmt.Errorf("publish %s/%d: %w", from, k+int64(i), err)
			break
		}
		published++
	}
	if pubErr != nil {
		err := e.store.Update(func(tx *msgstore.Tx) error {
			for i := published; i < len(raws); i++ {
				if err := tx.DeletePost(msgstore.PostRef{Author: from, K: k + int64(i)}); err != nil {
					return err
				}
			}
			if local != nil && published == 0 {
				return tx.DeleteMessage(local.user, local.peer, dedupKey(from, k, "msg"), localID)
			}
			return nil
		})
		if err != nil {
			pubErr = errors.Join(pubErr, fmt.Errorf("undo unpublished posts: %w", err))
		}
	}
	// Our own pieces are processed like received ones (twisterd hash-checks
	// them in add_piece): group messages, invites to local users, member
	// lists and copy_self copies take effect here.
	var errs []error
	for _, p := range posts[:published] {
		if err := e.process(ctx, p, false); err != nil {
			errs = append(errs, err)
		}
	}
	if pubErr != nil {
		return nil, errors.Join(append([]error{pubErr}, errs...)...)
	}
	if len(errs) > 0 {
		e.log.Warn("processing own post", "user", from, "err", errors.Join(errs...))
	}
	return raws, nil
}
