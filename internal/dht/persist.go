package dht

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	bolt "go.etcd.io/bbolt"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// dht.db layout: bucket "state" holds node-id, ext-ip and nodes (compact
// 26-byte infos); bucket "items" maps a target hash to the bencoded list of
// its items, each {p, sig_p, sig_user, [local_add_time], confirmed}, the
// entry twisterd's save_storage writes.
var (
	bucketState = []byte("state")
	bucketItems = []byte("items")
	keyNodeID   = []byte("node-id")
	keyExtIP    = []byte("ext-ip")
	keyNodes    = []byte("nodes")
)

func openDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("dht: %s is in use by another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("dht: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketState, bucketItems} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("dht: init %s: %w", path, err)
	}
	return db, nil
}

type savedItem struct {
	P            bencode.Bytes `bencode:"p"`
	SigP         []byte        `bencode:"sig_p"`
	SigUser      string        `bencode:"sig_user"`
	LocalAddTime int64         `bencode:"local_add_time,omitempty"`
	Confirmed    int64         `bencode:"confirmed"`
}

type savedState struct {
	id    krpc.ID
	hasID bool
	extIP netip.Addr
	nodes []nodeInfo
	items map[[20]byte][]savedItem
}

func (n *Node) loadState() (*savedState, error) {
	s := &savedState{items: make(map[[20]byte][]savedItem)}
	err := n.db.View(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketState)
		if v := st.Get(keyNodeID); len(v) == 20 {
			s.id, s.hasID = krpc.ID(v), true
		}
		if v := st.Get(keyExtIP); v != nil {
			if ip, ok := netip.AddrFromSlice(v); ok {
				s.extIP = ip
			}
		}
		s.nodes = decodeNodes(st.Get(keyNodes))
		return tx.Bucket(bucketItems).ForEach(func(k, v []byte) error {
			if len(k) != 20 {
				return nil
			}
			var l []savedItem
			if _, err := checkBencode(v, 16, 1<<20); err != nil {
				n.log.Warn("dht: skipping corrupt stored list", "target", fmt.Sprintf("%x", k), "err", err)
				return nil
			}
			if err := bencode.Unmarshal(v, &l); err != nil {
				n.log.Warn("dht: skipping corrupt stored list", "target", fmt.Sprintf("%x", k), "err", err)
				return nil
			}
			s.items[[20]byte(k)] = l
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("dht: load dht.db: %w", err)
	}
	return s, nil
}

// loadItems restores stored items, dropping expired ones as load_storage
// does (with the signature re-checked once the chain is known), and spreads
// their first republish over the next hour.
func (n *Node) loadItems(s *savedState) {
	now := n.now()
	best := n.bestHeight(n.ctx)
	spread := max(refreshConfirmed, time.Duration(len(s.items))*500*time.Millisecond)
	for _, list := range s.items {
		for _, si := range list {
			p, err := twproto.ParseDHTP(si.P)
			if err != nil || len(p.Raw) > twproto.MaxDHTSingleP || p.TargetKeys != 3 || !isCanonical(p.Raw) {
				continue
			}
			if best >= 1 {
				if n.keys == nil || twproto.VerifyDHTSignature(n.ctx, n.keys, p.Raw, si.SigP, si.SigUser) != nil {
					continue
				}
				if shouldExpire(p.Target.R, p.Target.Multi(), p.Height, best) {
					continue
				}
			}
			it := newStoredItem(p, si.SigP, si.SigUser)
			target := sha1.Sum(p.TargetRaw)
			it.localAdd = si.LocalAddTime
			it.confirmed = si.Confirmed != 0
			if n.items.store(target, it, now) {
				n.items.notePost(it)
			}
			it.nextRefresh = now.Add(time.Minute + time.Duration(rand.Float64()*float64(spread))).UnixNano()
		}
	}
	n.items.takeDirty() // just loaded: nothing to write back
}

// flush writes the routing table, our id and the changed item lists.
func (n *Node) flush() error {
	dirty := n.items.takeDirty()
	own := n.table.ownID()
	nodes := encodeNodes(n.table.all())
	n.mu.Lock()
	ext := n.extIP
	n.mu.Unlock()
	err := n.db.Update(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketState)
		if err := st.Put(keyNodeID, own[:]); err != nil {
			return err
		}
		if ext.IsValid() {
			if err := st.Put(keyExtIP, ext.AsSlice()); err != nil {
				return err
			}
		}
		if err := st.Put(keyNodes, nodes); err != nil {
			return err
		}
		ib := tx.Bucket(bucketItems)
		for target, list := range dirty {
			if len(list) == 0 {
				if err := ib.Delete(target[:]); err != nil {
					return err
				}
				continue
			}
			b, err := bencode.Marshal(list)
			if err != nil {
				return err
			}
			if err := ib.Put(append([]byte(nil), target[:]...), b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Keep the changes for the next attempt.
		n.items.mu.Lock()
		for t := range dirty {
			n.items.dirty[t] = struct{}{}
		}
		n.items.mu.Unlock()
		return fmt.Errorf("dht: write dht.db: %w", err)
	}
	return nil
}
