// Package dmtest holds test doubles for the DM engine: Keys, an in-memory
// user registry (twproto.KeySource), and Hub, an in-memory network that
// connects several engines through dm.Network. It is for tests only; the
// real network is internal/swarm and the real registry internal/registry.
//
// Hub delivers synchronously and validates every piece with
// twproto.ValidatePost before handing it over, like the swarm. It can hold a
// node's deliveries to replay them in any order, take a node offline, and
// fail publishes, which is what the out-of-order and restart tests need.
package dmtest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// Keys is an in-memory twproto.KeySource. Users are valid at every height.
type Keys struct {
	mu    sync.Mutex
	users map[string]twproto.UserKey
	best  int64
}

// NewKeys returns a registry with the given best height.
func NewKeys(best int64) *Keys {
	return &Keys{users: map[string]twproto.UserKey{}, best: best}
}

// Add registers user with a serialized public key.
func (k *Keys) Add(user string, pub []byte, regHeight int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.users[user] = twproto.UserKey{PubKey: bytes.Clone(pub), RegHeight: regHeight}
}

// UserKey implements twproto.KeySource.
func (k *Keys) UserKey(ctx context.Context, user string, height int64) (twproto.UserKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	uk, ok := k.users[user]
	if !ok {
		return twproto.UserKey{}, fmt.Errorf("user %q: %w", user, twproto.ErrUnknownUser)
	}
	return uk, nil
}

// BestHeight implements twproto.KeySource.
func (k *Keys) BestHeight(ctx context.Context) (int64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.best, nil
}

// Sink receives validated posts (dm.Engine satisfies it).
type Sink interface {
	HandlePost(ctx context.Context, p *twproto.Post) error
}

// Hub is an in-memory swarm shared by several nodes.
type Hub struct {
	keys   twproto.KeySource
	mu     sync.Mutex
	pieces map[string]map[int64][]byte
	nodes  []*Node
}

// NewHub returns an empty hub validating pieces with keys.
func NewHub(keys twproto.KeySource) *Hub {
	return &Hub{keys: keys, pieces: map[string]map[int64][]byte{}}
}

// Delivery is one piece on its way to a node.
type Delivery struct {
	User string
	K    int64
	Raw  []byte
}

// Node is one daemon's view of the hub; it implements dm.Network.
type Node struct {
	hub  *Hub
	Name string

	mu          sync.Mutex
	sink        Sink
	follows     map[string]bool
	hold        bool
	queue       []Delivery
	errs        []error
	failPublish func(user string, k int64) error
	failFollow  func(user string) error
}

// Node adds a node to the hub. It is offline until SetSink.
func (h *Hub) Node(name string) *Node {
	n := &Node{hub: h, Name: name, follows: map[string]bool{}}
	h.mu.Lock()
	h.nodes = append(h.nodes, n)
	h.mu.Unlock()
	return n
}

// Add stores a piece directly, as if published by a node outside the
// test (twisterd vectors), and delivers it to followers.
func (h *Hub) Add(ctx context.Context, user string, k int64, raw []byte) error {
	if err := h.store(user, k, raw); err != nil {
		return err
	}
	h.fanout(ctx, user, k, raw)
	return nil
}

// Pieces returns user's pieces in k order.
func (h *Hub) Pieces(user string) []Delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Delivery
	for k, raw := range h.pieces[user] {
		out = append(out, Delivery{User: user, K: k, Raw: raw})
	}
	slices.SortFunc(out, func(a, b Delivery) int { return cmp.Compare(a.K, b.K) })
	return out
}

func (h *Hub) store(user string, k int64, raw []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.pieces[user]
	if sw == nil {
		sw = map[int64][]byte{}
		h.pieces[user] = sw
	}
	if old, ok := sw[k]; ok && !bytes.Equal(old, raw) {
		return fmt.Errorf("piece %s/%d already stored with different content", user, k)
	}
	sw[k] = bytes.Clone(raw)
	return nil
}

func (h *Hub) fanout(ctx context.Context, user string, k int64, raw []byte) {
	h.mu.Lock()
	nodes := slices.Clone(h.nodes)
	h.mu.Unlock()
	for _, n := range nodes {
		n.mu.Lock()
		following := n.follows[user]
		n.mu.Unlock()
		if following {
			n.deliver(ctx, Delivery{User: user, K: k, Raw: raw})
		}
	}
}

// SetSink connects (or with nil, disconnects) the node's engine. An
// offline node misses deliveries; its follows are forgotten, as a
// restarted daemon's are until it follows again.
func (n *Node) SetSink(s Sink) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sink = s
	if s == nil {
		n.follows = map[string]bool{}
	}
}

// Hold queues deliveries instead of handing them over (true), or stops
// queueing (false; the queue stays until Flush).
func (n *Node) Hold(on bool) {
	n.mu.Lock()
	n.hold = on
	n.mu.Unlock()
}

// Queued returns the held deliveries.
func (n *Node) Queued() []Delivery {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.queue)
}

// Flush hands the held deliveries over in the order order gives (nil:
// as queued) and empties the queue.
func (n *Node) Flush(ctx context.Context, order func([]Delivery) []Delivery) {
	n.mu.Lock()
	q := n.queue
	n.queue = nil
	n.mu.Unlock()
	if order != nil {
		q = order(q)
	}
	for _, d := range q {
		n.hand(ctx, d)
	}
}

// FailPublish makes Publish fail when fn returns an error (nil: never).
func (n *Node) FailPublish(fn func(user string, k int64) error) {
	n.mu.Lock()
	n.failPublish = fn
	n.mu.Unlock()
}

// FailFollow makes Follow fail when fn returns an error (nil: never).
func (n *Node) FailFollow(fn func(user string) error) {
	n.mu.Lock()
	n.failFollow = fn
	n.mu.Unlock()
}

// Errs returns the errors the sink returned so far.
func (n *Node) Errs() []error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.errs)
}

// Publish implements dm.Network.
func (n *Node) Publish(ctx context.Context, user string, k int64, post []byte) error {
	n.mu.Lock()
	fail := n.failPublish
	n.mu.Unlock()
	if fail != nil {
		if err := fail(user, k); err != nil {
			return err
		}
	}
	return n.hub.Add(ctx, user, k, post)
}

// Follow implements dm.Network: the node gets every piece of user the hub
// has, and later ones as they come.
func (n *Node) Follow(ctx context.Context, user string) error {
	n.mu.Lock()
	if n.sink == nil {
		n.mu.Unlock()
		return errors.New("node offline")
	}
	if n.failFollow != nil {
		if err := n.failFollow(user); err != nil {
			n.mu.Unlock()
			return err
		}
	}
	n.follows[user] = true
	n.mu.Unlock()
	for _, d := range n.hub.Pieces(user) {
		n.deliver(ctx, d)
	}
	return nil
}

// HasPiece implements dm.PieceChecker.
func (n *Node) HasPiece(user string, k int64) bool {
	n.hub.mu.Lock()
	defer n.hub.mu.Unlock()
	_, ok := n.hub.pieces[user][k]
	return ok
}

// Follows reports whether the node follows user's swarm.
func (n *Node) Follows(user string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.follows[user]
}

func (n *Node) deliver(ctx context.Context, d Delivery) {
	n.mu.Lock()
	if n.sink == nil {
		n.mu.Unlock()
		return
	}
	if n.hold {
		n.queue = append(n.queue, d)
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	n.hand(ctx, d)
}

// hand validates d and gives it to the sink, with no lock held: the sink
// may call Follow or Publish from inside.
func (n *Node) hand(ctx context.Context, d Delivery) {
	n.mu.Lock()
	sink := n.sink
	n.mu.Unlock()
	if sink == nil {
		return
	}
	p, err := twproto.ValidatePost(ctx, d.Raw, d.User, d.K, n.hub.keys)
	if err == nil {
		err = sink.HandlePost(ctx, p)
	}
	if err != nil {
		n.mu.Lock()
		n.errs = append(n.errs, fmt.Errorf("%s: piece %s/%d: %w", n.Name, d.User, d.K, err))
		n.mu.Unlock()
	}
}
