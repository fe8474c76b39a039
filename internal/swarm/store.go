package swarm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Layout of swarm.db:
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
)

const recordHeader = 9

// ErrPieceExists is returned by Publish when piece k holds different bytes.
var ErrPieceExists = errors.New("piece already stored with different content")

// store is the bbolt piece store. It keeps no state of its own.
type store struct{ db *bolt.DB }

func openStore(path string) (*store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open swarm store %s: in use by another process", path)
		}
		return nil, fmt.Errorf("open swarm store %s: %w", path, err)
	}
	// Pieces arriving together share one commit; a lone piece waits at most this.
	db.MaxBatchDelay = 2 * time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSwarms, bucketPieces, bucketMaxSeen, bucketPending} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init swarm store: %w", err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func keyK(k int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(k)) }

// pieceMeta is what the swarm keeps in memory per held piece.
type pieceMeta struct {
	flags byte
	time  int64
}

// addSwarm records that user's swarm runs.
func (s *store) addSwarm(user string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSwarms).Put([]byte(user), nil)
	})
}

func (s *store) swarms() ([]string, error) {
	var users []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSwarms).ForEach(func(k, _ []byte) error {
			users = append(users, string(k))
			return nil
		})
	})
	return users, err
}

// loadPieces returns the metadata of every stored piece of user.
func (s *store) loadPieces(user string) (map[int64]pieceMeta, map[int64]int, error) {
	metas := make(map[int64]pieceMeta)
	seen := make(map[int64]int)
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketPieces).Bucket([]byte(user)); b != nil {
			err := b.ForEach(func(k, v []byte) error {
				if len(k) != 8 || len(v) < recordHeader {
					return fmt.Errorf("corrupt piece record for %s", user)
				}
				metas[int64(binary.BigEndian.Uint64(k))] = pieceMeta{flags: v[0], time: int64(binary.BigEndian.Uint64(v[1:9]))}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketMaxSeen).Bucket([]byte(user)); b != nil {
			return b.ForEach(func(k, v []byte) error {
				if len(k) == 8 && len(v) == 1 {
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
	added := false
	update := s.db.Update
	if batch {
		update = s.db.Batch
	}
	err := update(func(tx *bolt.Tx) error {
		added = false // Batch may run fn again
		b, err := tx.Bucket(bucketPieces).CreateBucketIfNotExists([]byte(user))
		if err != nil {
			return err
		}
		if old := b.Get(keyK(k)); old != nil {
			if len(old) >= recordHeader && bytes.Equal(old[recordHeader:], post) {
				return nil
			}
			return ErrPieceExists
		}
		rec := make([]byte, recordHeader, recordHeader+len(post))
		rec[0] = meta.flags
		binary.BigEndian.PutUint64(rec[1:], uint64(meta.time))
		rec = append(rec, post...)
		if err := b.Put(keyK(k), rec); err != nil {
			return err
		}
		pend := tx.Bucket(bucketPending)
		seq, err := pend.NextSequence()
		if err != nil {
			return err
		}
		added = true
		return pend.Put(keyK(int64(seq)), append(append([]byte(user), 0), keyK(k)...))
	})
	if err != nil && !errors.Is(err, ErrPieceExists) {
		err = fmt.Errorf("store piece %s/%d: %w", user, k, err)
	}
	return added, err
}

// piece returns the stored post bytes of user's piece k, or nil.
func (s *store) piece(user string, k int64) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPieces).Bucket([]byte(user))
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
		c := tx.Bucket(bucketPending).Cursor()
		for key, v := c.First(); key != nil && len(out) < n; key, v = c.Next() {
			i := bytes.IndexByte(v, 0)
			if i < 0 || len(v) != i+9 {
				return fmt.Errorf("corrupt pending record %x", key)
			}
			p := pendingPiece{seq: append([]byte(nil), key...), user: string(v[:i]), k: int64(binary.BigEndian.Uint64(v[i+1:]))}
			if b := tx.Bucket(bucketPieces).Bucket(v[:i]); b != nil {
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
		b := tx.Bucket(bucketPending)
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
		root := tx.Bucket(bucketMaxSeen)
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
