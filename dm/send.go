package dm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

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

// AutoK as the k of a send means "the next free k of the sender", chosen
// under the sender's lock, so concurrent callers never collide (RPC: null,
// CLI: auto).
const AutoK int64 = -1

// ErrNegativeK refuses a k below 0 other than AutoK.
var ErrNegativeK = errors.New("k must be >= 0")

// NewDirectMsg is newdirectmsg (spec §5.2): msg to a user or to a group
// alias, as post k of from (k and k+1 with copySelf, in random order; AutoK
// picks the next free k). It returns the last post created. A k already
// used by from is refused with a KUsedError. The call is all or nothing: a
// failed call consumes no k, a successful one has its posts committed
// (published again from the store after a crash).
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
	sealed, err := e.seal(ctx, outs)
	if err != nil {
		return nil, err
	}
	var local *localCopy
	now := e.now().Unix()
	if copySelf {
		// twisterd: rand() < RAND_MAX/2 puts the recipient copy first.
		if rand.IntN(2) == 0 {
			sealed[0], sealed[1] = sealed[1], sealed[0]
		}
	} else {
		local = &localCopy{user: from, peer: to, msg: msgstore.Message{
			Time: now, Text: msg, FromMe: true, From: from,
		}}
	}
	posts, err := e.publish(ctx, from, k, now, sealed, local)
	if err != nil {
		return nil, err
	}
	return posts[len(posts)-1], nil
}

// Send creates, publishes and processes one post per Outgoing, as posts k,
// k+1, ... of from (the group operations of package groupchat; AutoK picks
// the first free k). It returns the posts. All encryption happens before
// anything is stored or published.
func (e *Engine) Send(ctx context.Context, from string, k int64, outs []Outgoing) ([][]byte, error) {
	if len(outs) == 0 {
		return nil, nil
	}
	sealed, err := e.seal(ctx, outs)
	if err != nil {
		return nil, err
	}
	return e.publish(ctx, from, k, e.now().Unix(), sealed, nil)
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

// sealedOut is one encrypted payload with what the sender needs to process
// its own post without decrypting it again.
type sealedOut struct {
	env     *twproto.Envelope
	pub     []byte
	payload []byte
}

func (e *Engine) seal(ctx context.Context, outs []Outgoing) ([]sealedOut, error) {
	sealed := make([]sealedOut, len(outs))
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
		sealed[i] = sealedOut{env: env, pub: pub, payload: o.Payload}
	}
	return sealed, nil
}

// lockSender serializes the sends of user (from choosing k to the commit).
func (e *Engine) lockSender(user string) func() {
	e.sendMu.Lock()
	mu := e.senders[user]
	if mu == nil {
		mu = new(sync.Mutex)
		e.senders[user] = mu
	}
	e.sendMu.Unlock()
	mu.Lock()
	return mu.Unlock
}

// NextK is the next free k of user: one above the highest k held in the
// user's swarm or recorded as a DM post (getlasthave + 1).
func (e *Engine) NextK(user string) (int64, error) {
	next := int64(0)
	if lh, ok := e.net.(LastHaver); ok {
		next = max(next, lh.LastHave(user)+1)
	}
	err := e.store.View(func(tx *msgstore.Tx) error {
		if k, ok := tx.LastPostK(user); ok {
			next = max(next, k+1)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("next k of %s: %w", user, err)
	}
	return next, nil
}

// ownPost is one post a send creates, with what processing it needs.
type ownPost struct {
	raw   []byte
	post  *twproto.Post
	to    string // wallet name that opens it, "" if none
	plain []byte
}

// publish builds, signs and validates (once) one post per sealed payload,
// then commits in one transaction: the k reservation, the posts, the local
// copy, the processing of our own posts as received (twisterd hash-checks
// its own pieces: group messages, invites to local users, member lists and
// copy_self copies take effect) and, on a TxNetwork, the pieces. The HAVEs
// go out after the commit. On a Network without a shared file the pieces
// are published after the commit and undone on failure, as before.
func (e *Engine) publish(ctx context.Context, from string, k, now int64, sealed []sealedOut, local *localCopy) ([][]byte, error) {
	defer e.hot()()
	key, err := e.wallet.Key(from)
	if errors.Is(err, wallet.ErrUserNotFound) {
		return nil, Culprit(ErrSign, "'%s' is not a user of this wallet", from)
	}
	if err != nil {
		return nil, &CulpritError{Err: ErrSign, Detail: ": " + err.Error()}
	}
	if k < 0 && k != AutoK {
		return nil, ErrNegativeK
	}
	unlock := e.lockSender(from)
	defer unlock()
	if k == AutoK {
		if k, err = e.NextK(from); err != nil {
			return nil, err
		}
	}
	if local != nil {
		local.msg.K = k
	}
	if pc, ok := e.net.(PieceChecker); ok {
		for i := range sealed {
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
	own := make([]ownPost, len(sealed))
	raws := make([][]byte, len(sealed))
	for i, so := range sealed {
		kk := k + int64(i)
		raw, err := twproto.BuildDMPost(key, from, kk, height, now, so.env)
		if err != nil {
			var pe *twproto.PostError
			if errors.As(err, &pe) {
				return nil, err
			}
			return nil, ErrSign
		}
		// The one verification of this post on this node (twisterd's
		// acceptSignedPost): the swarm stores it as validated here.
		p, err := twproto.ValidatePost(ctx, raw, from, kk, e.keys)
		if err != nil {
			return nil, err
		}
		to, err := e.ownerOf(so.pub)
		if err != nil {
			return nil, fmt.Errorf("send as %s: %w", from, err)
		}
		own[i] = ownPost{raw: raw, post: p, to: to, plain: so.payload}
		raws[i] = raw
	}
	if e.txnet == nil {
		return e.publishApart(ctx, from, k, own, local)
	}

	var fx effects
	var announce []func()
	err = e.store.Update(func(tx *msgstore.Tx) error {
		fx, announce = effects{}, nil
		if _, err := e.reserve(tx, from, k, own, local); err != nil {
			return err
		}
		for _, o := range own {
			if o.to != "" {
				if err := e.apply(tx, o.post, o.to, o.plain, &fx); err != nil {
					return err
				}
			}
			a, err := e.txnet.StagePublish(tx.Bolt(), o.post)
			if err != nil {
				return fmt.Errorf("publish %s/%d: %w", from, o.post.K, err)
			}
			announce = append(announce, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("send as %s: %w", from, err)
	}
	for _, a := range announce {
		a()
	}
	e.after(ctx, fx)
	return raws, nil
}

// reserve records the posts of a send (taking their ks) and the local
// copy, whose id it returns.
func (e *Engine) reserve(tx *msgstore.Tx, from string, k int64, own []ownPost, local *localCopy) (int64, error) {
	for i, o := range own {
		ref := msgstore.PostRef{Author: from, K: k + int64(i)}
		if tx.HasPost(ref) {
			return 0, &KUsedError{User: from, K: ref.K}
		}
		if _, err := tx.PutPost(ref, o.raw); err != nil {
			return 0, err
		}
	}
	if local == nil {
		return 0, nil
	}
	m, _, err := tx.AddMessage(local.user, local.peer, dedupKey(from, k, "msg"), local.msg)
	return m.ID, err
}

// publishApart is the send path for a Network whose pieces are not in the
// message store's file (the in-memory hub of the tests): reserve, publish,
// undo what was not published, then process the published posts.
func (e *Engine) publishApart(ctx context.Context, from string, k int64, own []ownPost, local *localCopy) ([][]byte, error) {
	var localID int64
	err := e.store.Update(func(tx *msgstore.Tx) error {
		var err error
		localID, err = e.reserve(tx, from, k, own, local)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("send as %s: %w", from, err)
	}

	published := 0
	var pubErr error
	for i, o := range own {
		if err := e.net.Publish(ctx, from, k+int64(i), o.raw); err != nil {
			pubErr = fmt.Errorf("publish %s/%d: %w", from, k+int64(i), err)
			break
		}
		published++
	}
	if pubErr != nil {
		err := e.store.Update(func(tx *msgstore.Tx) error {
			for i := published; i < len(own); i++ {
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
	var errs []error
	for _, o := range own[:published] {
		if o.to == "" {
			continue // no local key opens it: nothing to process
		}
		if err := e.commit(ctx, o.post, o.to, o.plain, nil, false); err != nil {
			errs = append(errs, err)
		}
	}
	raws := make([][]byte, len(own))
	for i, o := range own {
		raws[i] = o.raw
	}
	if pubErr != nil {
		return nil, errors.Join(append([]error{pubErr}, errs...)...)
	}
	if len(errs) > 0 {
		e.log.Warn("processing own post", "user", from, "err", errors.Join(errs...))
	}
	return raws, nil
}
