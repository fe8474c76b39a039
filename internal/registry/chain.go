package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/twgroupd/twgroupd/internal/chain"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// ChainView is what the chain source needs from internal/chain; *chain.Chain
// implements it.
type ChainView interface {
	Tip() chain.Tip
	UserEntries(user string) ([]chain.Entry, error)
	UsersWithPrefix(prefix string, limit int) ([]string, error)
}

// Chain is a Registry read from twister's blockchain itself (-registry=chain,
// the default with neither -registry nor -upstream): internal/chain keeps
// every key each user had on the connected chain with the height it became
// valid, so UserKey answers as twisterd's GetTransaction(username,
// maxHeight) at any height, key replacements included, and BestHeight is
// the connected tip (getblockcount). docs/registry.md §3.
type Chain struct {
	c       ChainView
	syncing func() error
}

// ErrChainSyncing is returned (wrapped) while the initial sync runs: a
// retryable answer, not a verdict on a post (docs/registry.md).
var ErrChainSyncing = errors.New("blockchain still syncing")

// NewChain returns the chain source over c.
func NewChain(c ChainView) *Chain { return &Chain{c: c} }

// WithSyncing sets the check for "the initial sync is still running"; f
// returns an error wrapping ErrChainSyncing then, nil once caught up.
func (r *Chain) WithSyncing(f func() error) *Chain {
	r.syncing = f
	return r
}

// BestHeight implements twproto.KeySource: the connected chain's height,
// or ErrChainSyncing while far behind the network (a post from a height we
// have not reached is not "from the future", and one from a user
// registered there is not from an unknown user: both wait).
func (r *Chain) BestHeight(ctx context.Context) (int64, error) {
	if r.syncing != nil {
		if err := r.syncing(); err != nil {
			return 0, fmt.Errorf("chain registry: %w", err)
		}
	}
	return int64(r.c.Tip().Height), nil
}

// UserKey implements twproto.KeySource.
func (r *Chain) UserKey(ctx context.Context, user string, height int64) (twproto.UserKey, error) {
	regs, err := r.UserRegistrations(user)
	if err != nil {
		return twproto.UserKey{}, err
	}
	k, ok := keyAt(regs, height)
	if !ok {
		return twproto.UserKey{}, r.unknown(user, height)
	}
	return k, nil
}

// unknown is ErrUnknownUser, or ErrChainSyncing while the sync may still
// bring the registration.
func (r *Chain) unknown(user string, height int64) error {
	if r.syncing != nil {
		if err := r.syncing(); err != nil {
			return fmt.Errorf("chain registry: key of %q: %w", user, err)
		}
	}
	return fmt.Errorf("%w: %q at height %d", ErrUnknownUser, user, height)
}

// UsersWithPrefix lists up to limit registered names starting with prefix,
// sorted (listusernamespartial).
func (r *Chain) UsersWithPrefix(_ context.Context, prefix string, limit int) ([]string, error) {
	return r.c.UsersWithPrefix(prefix, limit)
}

// UserRegistrations lists the user's keys on the chain, ascending height;
// ErrUnknownUser if the name was never registered.
func (r *Chain) UserRegistrations(user string) ([]Registration, error) {
	if CheckUsername(user) != nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownUser, user)
	}
	es, err := r.c.UserEntries(user)
	if errors.Is(err, chain.ErrNotFound) {
		return nil, r.unknown(user, -1)
	}
	if err != nil {
		return nil, fmt.Errorf("chain registry: %w", err)
	}
	regs := make([]Registration, len(es))
	for i, e := range es {
		regs[i] = Registration{User: user, PubKey: e.PubKey, Height: int64(e.Height)}
	}
	return regs, nil
}
