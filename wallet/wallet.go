// Package wallet is twgroupd's keystore: the private keys of local users and
// of group chats, in a bbolt file (wallet.db, mode 0600) in the datadir.
//
// It owns keys and names only. Group keys live under node-local aliases, "*"
// followed by 8 lowercase letters (spec §6.1), exactly as twisterd stores a
// group key with the alias as its wallet username; so Key("*alias") works
// like dumpprivkey <alias>. Keys are indexed by key ID (Hash160 of the
// serialized public key, spec §1.2), which is how "do we already hold this
// key" is answered. Messages, group descriptions and members are not here
// (see internal/msgstore). Secrets never reach logs or error texts.
//
// Every write is one bbolt transaction, committed before the call returns.
// The file is opened with a lock timeout, so a second daemon on the same
// datadir fails fast with ErrLocked instead of hanging.
package wallet

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// Errors. Their texts are twisterd's RPC messages (contracts.md), so the rpc
// package can map them to codes with errors.Is.
var (
	ErrUserNotFound  = errors.New("Username not found")
	ErrKeyNotKnown   = errors.New("private key is not known")
	ErrInvalidKey    = errors.New("Invalid private key")
	ErrUserMustExist = errors.New("User must exist (or allow_new_user flag must be set)")
	ErrKeyMismatch   = errors.New("Private key mismatch to existing public key (wrong username?)")
	ErrUserExists    = errors.New("Error: this username exists in wallet")
	ErrUserInChain   = errors.New("Error: this username exists in tx database")
	ErrLocked        = errors.New("file locked")
	// ErrInvalidName refuses names the wallet cannot hold for a user: empty,
	// or starting with '*', which is reserved for group aliases.
	ErrInvalidName = errors.New("invalid wallet username")
	// ErrNotGroupKey is returned by AddGroupKey when the key already belongs
	// to a local user (twisterd logs "Invalid group alias" and gives up).
	ErrNotGroupKey = errors.New("Invalid group alias")
)

// DefaultOpenTimeout is how long Open waits for the file lock.
const DefaultOpenTimeout = time.Second

// aliasLetters is the length of a group alias without its '*'.
const aliasLetters = 8

var (
	bucketNames = []byte("names") // name -> record
	bucketIDs   = []byte("ids")   // key ID (Hash160 of pubkey) -> name
)

// Options tune Open. A nil *Options means the defaults.
type Options struct {
	// OpenTimeout bounds the wait for the file lock (DefaultOpenTimeout if 0).
	OpenTimeout time.Duration
	// Now gives creation times (time.Now if nil).
	Now func() time.Time
	// NoSync skips fsync; for benchmarks only.
	NoSync bool
}

// NamedKey is a wallet key with its wallet username (a user or a "*alias").
type NamedKey struct {
	Name string
	Key  *twproto.PrivateKey
}

// Wallet is an open wallet file. Its methods are safe for concurrent use.
type Wallet struct {
	db  *bolt.DB
	now func() time.Time
	gen atomic.Uint64
}

// Open opens or creates the wallet file at path with mode 0600.
func Open(path string, opts *Options) (*Wallet, error) {
	timeout, now, noSync := DefaultOpenTimeout, time.Now, false
	if opts != nil {
		noSync = opts.NoSync
		if opts.OpenTimeout > 0 {
			timeout = opts.OpenTimeout
		}
		if opts.Now != nil {
			now = opts.Now
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, NoSync: noSync})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("wallet %s is in use by another process (%w)", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open wallet %s: %w", path, err)
	}
	// An existing file keeps its mode on open; a wallet is never group or
	// world readable.
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("open wallet %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketNames, bucketIDs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open wallet %s: %w", path, err)
	}
	return &Wallet{db: db, now: now}, nil
}

// Close closes the file.
func (w *Wallet) Close() error {
	if err := w.db.Close(); err != nil {
		return fmt.Errorf("close wallet: %w", err)
	}
	return nil
}

// Generation changes after every write; callers that cache AllKeys (the
// receive path) compare it to know when to reload.
func (w *Wallet) Generation() uint64 { return w.gen.Load() }

// IsGroupAlias reports whether name has the shape of a group alias.
func IsGroupAlias(name string) bool { return strings.HasPrefix(name, "*") }

// CreateUser makes a fresh compressed key for a new local user.
func (w *Wallet) CreateUser(name string) (*twproto.PrivateKey, error) {
	if err := checkUserName(name); err != nil {
		return nil, err
	}
	key, err := twproto.NewPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("create user: %w", err)
	}
	err = w.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketNames).Get([]byte(name)) != nil {
			return ErrUserExists
		}
		return putKey(tx, name, key, w.now())
	})
	if err != nil {
		return nil, fmt.Errorf("create user %q: %w", name, err)
	}
	return key, nil
}

// ImportUserKey stores key for user name. Importing the key a name already
// holds is a no-op (twisterd's importprivkey returns null then). A name that
// holds another key, or a key held under another name, is refused with
// ErrKeyMismatch. Checking the key against the blockchain is the caller's job.
func (w *Wallet) ImportUserKey(name string, key *twproto.PrivateKey) error {
	if err := checkUserName(name); err != nil {
		return err
	}
	if key == nil || key.Key == nil {
		return ErrInvalidKey
	}
	err := w.update(func(tx *bolt.Tx) error {
		id := keyID(key)
		if owner := tx.Bucket(bucketIDs).Get(id[:]); owner != nil {
			if string(owner) == name {
				return errNoChange
			}
			return ErrKeyMismatch
		}
		if tx.Bucket(bucketNames).Get([]byte(name)) != nil {
			return ErrKeyMismatch
		}
		return putKey(tx, name, key, w.now())
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("import key for %q: %w", name, err)
	}
	return nil
}

// Key returns the key of a user or of a group alias.
func (w *Wallet) Key(name string) (*twproto.PrivateKey, error) {
	var key *twproto.PrivateKey
	err := w.db.View(func(tx *bolt.Tx) error {
		rec := tx.Bucket(bucketNames).Get([]byte(name))
		if rec == nil {
			return ErrUserNotFound
		}
		var err error
		key, _, err = decodeRecord(rec)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("wallet key %q: %w", name, err)
	}
	return key, nil
}

// Users lists local usernames, sorted, without group aliases.
func (w *Wallet) Users() ([]string, error) {
	return w.names(func(n string) bool { return !IsGroupAlias(n) })
}

// GroupAliases lists the group aliases, sorted.
func (w *Wallet) GroupAliases() ([]string, error) {
	return w.names(IsGroupAlias)
}

func (w *Wallet) names(keep func(string) bool) ([]string, error) {
	out := []string{}
	err := w.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNames).ForEach(func(k, _ []byte) error {
			if keep(string(k)) {
				out = append(out, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list wallet names: %w", err)
	}
	return out, nil // bbolt iterates in byte order: already sorted
}

// AddGroupKey stores a group key under a fresh random alias, unique on this
// node. A key already held as a group key returns its alias with
// created=false (spec §6.2 step 3); a key held by a local user is refused
// with ErrNotGroupKey.
func (w *Wallet) AddGroupKey(key *twproto.PrivateKey) (alias string, created bool, err error) {
	if key == nil || key.Key == nil {
		return "", false, ErrInvalidKey
	}
	err = w.update(func(tx *bolt.Tx) error {
		id := keyID(key)
		if owner := tx.Bucket(bucketIDs).Get(id[:]); owner != nil {
			if !IsGroupAlias(string(owner)) {
				return ErrNotGroupKey
			}
			alias = string(owner)
			return errNoChange
		}
		names := tx.Bucket(bucketNames)
		for {
			a, err := randomAlias()
			if err != nil {
				return err
			}
			if names.Get([]byte(a)) == nil {
				alias = a
				break
			}
		}
		created = true
		return putKey(tx, alias, key, w.now())
	})
	if errors.Is(err, errNoChange) {
		return alias, false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("add group key: %w", err)
	}
	return alias, created, nil
}

// AliasForKey returns the group alias under which key is held.
func (w *Wallet) AliasForKey(key *twproto.PrivateKey) (string, bool, error) {
	if key == nil || key.Key == nil {
		return "", false, ErrInvalidKey
	}
	var alias string
	err := w.db.View(func(tx *bolt.Tx) error {
		id := keyID(key)
		if owner := tx.Bucket(bucketIDs).Get(id[:]); owner != nil && IsGroupAlias(string(owner)) {
			alias = string(owner)
		}
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("alias for key: %w", err)
	}
	return alias, alias != "", nil
}

// NameForKey returns the wallet name (user or alias) holding key.
func (w *Wallet) NameForKey(key *twproto.PrivateKey) (string, bool, error) {
	var name string
	err := w.db.View(func(tx *bolt.Tx) error {
		id := keyID(key)
		name = string(tx.Bucket(bucketIDs).Get(id[:]))
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("name for key: %w", err)
	}
	return name, name != "", nil
}

// AllKeys returns every key, users and groups, in name order. The receive
// path tries each of them on every DM post; it caches the result and
// reloads when Generation changes.
func (w *Wallet) AllKeys() ([]NamedKey, error) {
	var out []NamedKey
	err := w.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNames).ForEach(func(k, v []byte) error {
			key, _, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
			out = append(out, NamedKey{Name: string(k), Key: key})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("wallet keys: %w", err)
	}
	return out, nil
}

// errNoChange ends an update transaction early without error to the caller.
var errNoChange = errors.New("no change")

func (w *Wallet) update(fn func(tx *bolt.Tx) error) error {
	err := w.db.Update(fn)
	if err == nil {
		w.gen.Add(1)
	}
	return err
}

func checkUserName(name string) error {
	if name == "" || IsGroupAlias(name) {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	return nil
}

func keyID(k *twproto.PrivateKey) [20]byte { return twproto.Hash160(k.PubKey()) }

// record layout: version(1)=1 | compressed(1) | created unix (8, BE) | secret(32).
const recordLen = 1 + 1 + 8 + 32

func putKey(tx *bolt.Tx, name string, key *twproto.PrivateKey, created time.Time) error {
	rec := make([]byte, 0, recordLen)
	rec = append(rec, 1)
	if key.Compressed {
		rec = append(rec, 1)
	} else {
		rec = append(rec, 0)
	}
	rec = binary.BigEndian.AppendUint64(rec, uint64(created.Unix()))
	rec = append(rec, key.Secret()...)
	if err := tx.Bucket(bucketNames).Put([]byte(name), rec); err != nil {
		return err
	}
	id := keyID(key)
	return tx.Bucket(bucketIDs).Put(id[:], []byte(name))
}

func decodeRecord(rec []byte) (*twproto.PrivateKey, time.Time, error) {
	if len(rec) != recordLen || rec[0] != 1 {
		return nil, time.Time{}, errors.New("corrupt wallet record")
	}
	created := time.Unix(int64(binary.BigEndian.Uint64(rec[2:10])), 0)
	key, err := twproto.PrivateKeyFromBytes(bytes.Clone(rec[10:]), rec[1] == 1)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("corrupt wallet record: %w", err)
	}
	return key, created, nil
}

// randomAlias is "*" + 8 letters a-z from crypto/rand (spec §6.1 uses
// rand(); the shape is the same, the randomness is better).
func randomAlias() (string, error) {
	b := make([]byte, 1, 1+aliasLetters)
	b[0] = '*'
	for range aliasLetters {
		n, err := rand.Int(rand.Reader, big.NewInt(26))
		if err != nil {
			return "", fmt.Errorf("random alias: %w", err)
		}
		b = append(b, byte('a'+n.Int64()))
	}
	return string(b), nil
}

// KeyNotKnown is twisterd's dumpprivkey error for a name whose private key
// is unavailable; it matches ErrKeyNotKnown with errors.Is.
func KeyNotKnown(name string) error { return &keyNotKnownError{name: name} }

type keyNotKnownError struct{ name string }

func (e *keyNotKnownError) Error() string {
	return fmt.Sprintf("Private key for username %s is not known", e.name)
}

func (e *keyNotKnownError) Is(target error) bool { return target == ErrKeyNotKnown }
