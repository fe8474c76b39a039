package swarm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Layout of swarm.db (or, with Config.DB, of the "swarm" bucket of a file
// shared with the message store):
//
//	swarms:  user -> empty                     swarms we run (survive restarts)
//	pieces:  user -> {be64(k) -> record}       record = flags(1) | be64(time) | post
//	maxseen: user -> {be64(k) -> count(1)}     getpiecemaxseen, saved on Close
//	pending: be64(seq) -> user 0x00 be64(k)    verified pieces not yet handed to the sink
var (
	bucketSwarms  = []byte("swarms")
	bucketPieces  = []byte("pieces")
	bucketMaxSeen = []byte("maxseen")
	bucketPending = []byte("pending")
	// bucketRoot holds the swarm's buckets in a shared file.
	bucketRoot = []byte("swarm")
)

const recordHeader = 9

// ErrPieceExists is returned by Publish when piece k holds different bytes.
var ErrPieceExists = errors.New("piece already stored with different content")

// store is the bbolt piece store. It keeps no state of its own.
type store struct {
	db *bolt.DB
	// shared: db belongs to the caller (Config.DB) and the swarm's buckets
	// live under bucketRoot; otherwise db is swarm.db and they are top level.
	shared bool
	// soloApply commits each received piece and its sink work alone (the
	// path before batching; BenchmarkFetch1000Posts compares the two).
	soloApply bool
}

// parent is where the swarm's buckets hang: the transaction itself, or the
// root bucket of a shared file.
type parent interface {
	Bucket(name []byte) *bolt.Bucket
	CreateBucketIfNotExists(name []byte) (*bolt.Bucket, error)
}

func openStore(path string) (*store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open swarm store %s: in use by another process", path)
		}
		return nil, fmt.Errorf("open swarm store %s: %w", path, err)
	}
	s := &store{db: db}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// sharedStore keeps the swarm's buckets in db, a file opened by the caller.
// Pieces of an older swarm.db at legacy are moved in once (then renamed
// swarm.db.migrated), so a datadir keeps its posts across the change.
func sharedStore(db *bolt.DB, legacy string) (*store, error) {
	s := &store{db: db, shared: true}
	if err := s.init(); err != nil {
		return nil, err
	}
	if err := s.migrate(legacy); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *store) init() error {
	// Pieces arriving together share one commit; a lone piece waits at most this.
	s.db.MaxBatchDelay = 2 * time.Millisecond
	err := s.db.Update(func(tx *bolt.Tx) error {
		var p parent = tx
		if s.shared {
			root, err := tx.CreateBucketIfNotExists(bucketRoot)
			if err != nil {
				return err
			}
			p = root
		}
		for _, b := range [][]byte{bucketSwarms, bucketPieces, bucketMaxSeen, bucketPending} {
			if _, err := p.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("init swarm store: %w", err)
	}
	return nil
}

// migrate copies the buckets of a standalone swarm.db into the shared root.
func (s *store) migrate(legacy string) error {
	if legacy == "" {
		return nil
	}
	if _, err := os.Stat(legacy); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	old, err := bolt.Open(legacy, 0o600, &bolt.Options{Timeout: 2 * time.Second, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("migrate swarm store %s: %w", legacy, err)
	}
	err = old.View(func(otx *bolt.Tx) error {
		return s.db.Update(func(tx *bolt.Tx) error {
			root := tx.Bucket(bucketRoot)
			for _, name := range [][]byte{bucketSwarms, bucketPieces, bucketMaxSeen} {
				if src := otx.Bucket(name); src != nil {
					if err := copyBucket(root.Bucket(name), src); err != nil {
						return err
					}
				}
			}
			// Queued deliveries are not copied: every piece is offered to
			// the sink again below, which ignores the ones it has seen.
			if src := otx.Bucket(bucketPieces); src != nil {
				pend := root.Bucket(bucketPending)
				return src.ForEach(func(user, _ []byte) error {
					ub := src.Bucket(user)
					if ub == nil {
						return nil
					}
					return ub.ForEach(func(k, _ []byte) error {
						seq, err := pend.NextSequence()
						if err != nil {
							return err
						}
						return pend.Put(keyK(int64(seq)), append(append(append([]byte(nil), user...), 0), k...))
					})
				})
			}
			return nil
		})
	})
	if cerr := old.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("migrate swarm store %s: %w", legacy, err)
	}
	if err := os.Rename(legacy, legacy+".migrated"); err != nil {
		return fmt.Errorf("migrate swarm store %s: %w", legacy, err)
	}
	return nil
}

// copyBucket copies src's keys and nested buckets into dst (existing keys
// in dst win).
func copyBucket(dst, src *bolt.Bucket) error {
	return src.ForEach(func(k, v []byte) error {
		if v == nil {
			sub, err := dst.CreateBucketIfNotExists(k)
			if err != nil {
				return err
			}
			return copyBucket(sub, src.Bucket(k))
		}
		if dst.Get(k) != nil {
			return nil
		}
		return dst.Put(k, v)
	})
}

// root is where the swarm's buckets are in tx.
func (s *store) root(tx *bolt.Tx) parent {
	if s.shared {
		return tx.Bucket(bucketRoot)
	}
	return tx
}

// close closes swarm.db; a shared file is the caller's to close.
func (s *store) close() error {
	if s.shared {
		return nil
	}
	return s.db.Close()
}

func keyK(k int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(k)) }

// pieceMeta is what the swarm keeps in memory per held piece.
type pieceMeta struct {
	flags byte
	time  int64
}

// addSwarm records that user's swarm runs.
func (s *store) addSwarm(user string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return s.addSwarmTx(tx, user) })
}

func (s *store) addSwarmTx(tx *bolt.Tx, user string) error {
	b := s.root(tx).Bucket(bucketSwarms)
	if b.Get([]byte(user)) != nil {
		return nil
	}
	return b.Put([]byte(user), nil)
}

func (s *store) swarms() ([]string, error) {
	var users []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return s.root(tx).Bucket(bucketSwarms).ForEach(func(k, _ []byte) error {
			users = append(users, string(k))
			return nil
		})
	})
	return users, err
}

// loadPieces returns the metadata of every stored piece of user.
func (s *store) loadPieces(user string) (map[int64]pieceMeta, map[int64]int, error) {
	// nil maps when there is nothing: an empty swarm allocates none.
	var metas map[int64]pieceMeta
	var seen map[int64]int
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := s.root(tx).Bucket(bucketPieces).Bucket([]byte(user)); b != nil {
			err := b.ForEach(func(k, v []byte) error {
				if len(k) != 8 || len(v) < recordHeader {
					return fmt.Errorf("corrupt piece record for %s", user)
				}
				if metas == nil {
					metas = make(map[int64]pieceMeta)
				}
				metas[int64(binary.BigEndian.Uint64(k))] = pieceMeta{flags: v[0], time: int64(binary.BigEndian.Uint64(v[1:9]))}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if b := s.root(tx).Bucket(bucketMaxSeen).Bucket([]byte(user)); b != nil {
			return b.ForEach(func(k, v []byte) error {
				if len(k) == 8 && len(v) == 1 {
					if seen == nil {
						seen = make(map[int64]int)
					}
					seen[int64(binary.BigEndian.Uint64(k))] = int(v[0])
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("load pieces of %s: %w", user, err)
	}
	return metas, seen, nil
}

// putPiece stores a verified piece and queues it for the sink, atomically.
// It reports false when the same piece was already stored; a different
// post under the same k is ErrPieceExists (twisterd's add_piece ignores
// an existing piece, never overwrites it).
//
// batch coalesces concurrent writers into one transaction and one fsync
// (received pieces are verified in parallel); a local Publish writes alone.
func (s *store) putPiece(user string, k int64, meta pieceMeta, post []byte, batch bool) (bool, error) {
	return s.putPieceQueued(user, k, meta, post, batch, true)
}

// putPieceQueued is putPiece with the queue entry optional (none for a
// piece the sink has nothing to do with).
func (s *store) putPieceQueued(user string, k int64, meta pieceMeta, post []byte, batch, queue bool) (bool, error) {
	added := false
	update := s.db.Update
	if batch {
		update = s.db.Batch
	}
	err := update(func(tx *bolt.Tx) error {
		var err error
		added, err = s.putPieceTx(tx, user, k, meta, post, queue) // Batch may run fn again
		return err
	})
	if err != nil && !errors.Is(err, ErrPieceExists) {
		err = fmt.Errorf("store piece %s/%d: %w", user, k, err)
	}
	return added, err
}

// putPieceWith stores a piece and runs apply (the sink's work on it) in the
// same transaction, apply only when the piece is new: one commit for both.
//
// With batch, pieces verified at the same time share one transaction (and
// one fsync): each (piece, apply) pair still commits together or not at
// all, so a crash leaves no piece without its work. bolt.Batch reruns fn
// (and so apply) when another function of the batch fails; apply must
// rebuild its effects on every run (dm.Engine's does).
func (s *store) putPieceWith(user string, k int64, meta pieceMeta, post []byte, apply func(*bolt.Tx) error, batch bool) (bool, error) {
	added := false
	update := s.db.Update
	if batch && !s.soloApply {
		update = s.db.Batch
	}
	err := update(func(tx *bolt.Tx) error {
		var err error
		if added, err = s.putPieceTx(tx, user, k, meta, post, false); err != nil || !added {
			return err
		}
		return apply(tx)
	})
	if err != nil && !errors.Is(err, ErrPieceExists) {
		err = fmt.Errorf("store piece %s/%d: %w", user, k, err)
	}
	return added, err
}

// putPieceTx stores a piece in tx, queued for the sink if queue is set.
func (s *store) putPieceTx(tx *bolt.Tx, user string, k int64, meta pieceMeta, post []byte, queue bool) (bool, error) {
	root := s.root(tx)
	b, err := root.Bucket(bucketPieces).CreateBucketIfNotExists([]byte(user))
	if err != nil {
		return false, err
	}
	if old := b.Get(keyK(k)); old != nil {
		if len(old) >= recordHeader && bytes.Equal(old[recordHeader:], post) {
			return false, nil
		}
		return false, ErrPieceExists
	}
	rec := make([]byte, recordHeader, recordHeader+len(post))
	rec[0] = meta.flags
	binary.BigEndian.PutUint64(rec[1:], uint64(meta.time))
	rec = append(rec, post...)
	if err := b.Put(keyK(k), rec); err != nil {
		return false, err
	}
	if !queue {
		return true, nil
	}
	pend := root.Bucket(bucketPending)
	seq, err := pend.NextSequence()
	if err != nil {
		return false, err
	}
	return true, pend.Put(keyK(int64(seq)), append(append([]byte(user), 0), keyK(k)...))
}

// piece returns the stored post bytes of user's piece k, or nil.
func (s *store) piece(user string, k int64) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := s.root(tx).Bucket(bucketPieces).Bucket([]byte(user))
		if b == nil {
			return nil
		}
		if v := b.Get(keyK(k)); len(v) >= recordHeader {
			out = append([]byte(nil), v[recordHeader:]...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read piece %s/%d: %w", user, k, err)
	}
	return out, nil
}

type pendingPiece struct {
	seq  []byte
	user string
	k    int64
	post []byte
}

// pending returns up to n queued pieces in arrival order.
func (s *store) pending(n int) ([]pendingPiece, error) {
	var out []pendingPiece
	err := s.db.View(func(tx *bolt.Tx) error {
		c := s.root(tx).Bucket(bucketPending).Cursor()
		for key, v := c.First(); key != nil && len(out) < n; key, v = c.Next() {
			i := bytes.IndexByte(v, 0)
			if i < 0 || len(v) != i+9 {
				return fmt.Errorf("corrupt pending record %x", key)
			}
			p := pendingPiece{seq: append([]byte(nil), key...), user: string(v[:i]), k: int64(binary.BigEndian.Uint64(v[i+1:]))}
			if b := s.root(tx).Bucket(bucketPieces).Bucket(v[:i]); b != nil {
				if rec := b.Get(v[i+1:]); len(rec) >= recordHeader {
					p.post = append([]byte(nil), rec[recordHeader:]...)
				}
			}
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read pending pieces: %w", err)
	}
	return out, nil
}

func (s *store) donePending(seqs [][]byte) error {
	if len(seqs) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := s.root(tx).Bucket(bucketPending)
		for _, seq := range seqs {
			if err := b.Delete(seq); err != nil {
				return err
			}
		}
		return nil
	})
}

// saveMaxSeen persists piece availability maxima (libtorrent keeps them
// in resume data).
func (s *store) saveMaxSeen(all map[string]map[int64]int) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		root := s.root(tx).Bucket(bucketMaxSeen)
		for user, seen := range all {
			b, err := root.CreateBucketIfNotExists([]byte(user))
			if err != nil {
				return err
			}
			for k, n := range seen {
				if err := b.Put(keyK(k), []byte{byte(n)}); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
