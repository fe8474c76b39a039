// Package registry answers "who is who" for twgroupd: a username's public key
// of record valid at a block height, its registration height, and the best
// block height. In twister that is the blockchain (spec §1.1, §3.3); twgroupd
// neither mines nor validates a chain, it asks a source:
//
//   - Upstream: a twisterd over JSON-RPC (dumppubkey, getrawtransaction,
//     getblock, getblockcount), cached and refreshed as blocks arrive;
//   - File: a local text file for devnets and tests, shared safely by several
//     processes, where Register plays the part of sendnewusertransaction.
//
// ImportUserKeys fetches an upstream twisterd's wallet keys so a node can sign
// with the same keys. The package holds public keys only and never stores a
// private key; it must not touch the wallet (the node imports what it returns).
// docs/registry.md describes the file format and the flows.
package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// Registry is a source of users' keys and block heights.
type Registry interface {
	twproto.KeySource
}

// MaxUsernameLen is twisterd's CheckUsername limit (src/main.cpp).
const MaxUsernameLen = 16

// ErrUnknownUser is twproto.ErrUnknownUser, so ValidatePost recognises it.
var ErrUnknownUser = twproto.ErrUnknownUser

var (
	// ErrAlreadyRegistered has twisterd's sendnewusertransaction text; the
	// rpc layer maps it to -11 (RPC_WALLET_INVALID_ACCOUNT_NAME).
	ErrAlreadyRegistered = errors.New("Error: this username exists in tx database")
	// ErrInvalidUsername is returned for names twisterd's CheckUsername refuses.
	ErrInvalidUsername = errors.New("invalid username")
	// ErrInvalidPubKey is returned for bytes that are not a secp256k1 public key.
	ErrInvalidPubKey = errors.New("invalid public key")
)

// Registration is one registration (or key replacement) of a user: the key
// that became the user's key of record in the block at Height.
type Registration struct {
	User   string
	PubKey []byte
	Height int64
}

// CheckUsername applies twisterd's rule (src/main.cpp CheckUsername): 1 to 16
// characters from a-z, 0-9 and '_'.
func CheckUsername(name string) error {
	if len(name) == 0 || len(name) > MaxUsernameLen {
		return fmt.Errorf("%w %q: length must be 1 to %d", ErrInvalidUsername, name, MaxUsernameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return fmt.Errorf("%w %q: only a-z, 0-9 and _ are allowed", ErrInvalidUsername, name)
		}
	}
	return nil
}

// checkPubKey accepts what twisterd's CPubKey::IsValid accepts for a
// registration, and additionally requires a point on the curve.
func checkPubKey(b []byte) error {
	switch {
	case len(b) == 33 && (b[0] == 2 || b[0] == 3):
	case len(b) == 65 && (b[0] == 4 || b[0] == 6 || b[0] == 7):
	default:
		return fmt.Errorf("%w: %d bytes", ErrInvalidPubKey, len(b))
	}
	if _, err := twproto.ParsePubKey(b); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidPubKey, err)
	}
	return nil
}

// keyAt picks, from a user's registrations sorted by ascending height, the
// one in force at height (height < 0: the latest), as twisterd's
// GetTransaction(username, maxHeight) does (src/main.cpp).
func keyAt(regs []Registration, height int64) (twproto.UserKey, bool) {
	for i := len(regs) - 1; i >= 0; i-- {
		if height < 0 || regs[i].Height <= height {
			return twproto.UserKey{PubKey: bytes.Clone(regs[i].PubKey), RegHeight: regs[i].Height}, true
		}
	}
	return twproto.UserKey{}, false
}

// TxID is a stand-in for the transaction id sendnewusertransaction returns:
// the hex of SHA256d over the registration's file line. A local registry has
// no real transaction, so this identifies the registration, nothing more.
func (r Registration) TxID() string {
	first := sha256.Sum256([]byte(formatUser(r)))
	second := sha256.Sum256(first[:])
	return hex.EncodeToString(second[:])
}
