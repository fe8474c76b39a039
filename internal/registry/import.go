package registry

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/internal/upstream"
)

// ImportedKey is a user's private key read from an upstream twisterd wallet.
type ImportedKey struct {
	User string
	Key  *twproto.PrivateKey
	// Registered is true when the upstream's chain has the user with exactly
	// this key (dumppubkey); false for a wallet user not registered yet.
	Registered bool
}

// twisterd's RPC_WALLET_UNLOCK_NEEDED.
const rpcWalletUnlockNeeded = -13

// ImportUserKeys reads the private keys of users from the upstream twisterd's
// wallet (dumpprivkey), so a twgroupd running with -upstream signs and
// decrypts with the very keys twisterd has; the caller stores them
// (wallet.ImportUserKey). users nil or empty means every wallet user
// (listwalletusers), minus "<name>/replaced" keys and group aliases. A key
// that does not match the user's registered key is refused, since posts
// signed with it would fail everywhere. It returns the keys it could read
// and an error joining the failures; the error texts never hold a key.
func ImportUserKeys(ctx context.Context, c Caller, users []string) ([]ImportedKey, error) {
	if len(users) == 0 {
		var all []string
		res, err := c.Call(ctx, "listwalletusers")
		if err != nil {
			return nil, fmt.Errorf("import user keys: listwalletusers: %w", err)
		}
		if err := jsonUnmarshal(res, &all); err != nil {
			return nil, fmt.Errorf("import user keys: listwalletusers: %w", err)
		}
		for _, u := range all {
			if CheckUsername(u) == nil { // drops "x/replaced" and "*alias"
				users = append(users, u)
			}
		}
	}
	var keys []ImportedKey
	var errs []error
	for _, user := range users {
		k, err := importOne(ctx, c, user)
		var rpcErr *upstream.RPCError
		if errors.As(err, &rpcErr) && rpcErr.Code == rpcWalletUnlockNeeded {
			return keys, fmt.Errorf("import user keys: the upstream wallet is locked (walletpassphrase first): %w", err)
		}
		if errors.Is(err, upstream.ErrUnavailable) || errors.Is(err, upstream.ErrUnauthorized) || errors.Is(err, context.Canceled) {
			return keys, fmt.Errorf("import user keys: %w", err)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		keys = append(keys, k)
	}
	if len(errs) > 0 {
		return keys, fmt.Errorf("import user keys: %w", errors.Join(errs...))
	}
	return keys, nil
}

func importOne(ctx context.Context, c Caller, user string) (ImportedKey, error) {
	if err := CheckUsername(user); err != nil {
		return ImportedKey{}, err
	}
	var wif string
	res, err := c.Call(ctx, "dumpprivkey", user)
	if err != nil {
		return ImportedKey{}, fmt.Errorf("dumpprivkey %s: %w", user, err)
	}
	if err := jsonUnmarshal(res, &wif); err != nil {
		return ImportedKey{}, fmt.Errorf("dumpprivkey %s: %w", user, err)
	}
	key, err := twproto.ParseWIF(strings.TrimSpace(wif))
	if err != nil {
		// err from ParseWIF names the defect (checksum, length), never the key.
		return ImportedKey{}, fmt.Errorf("dumpprivkey %s: not a WIF key: %w", user, err)
	}
	var pubHex string
	res, err = c.Call(ctx, "dumppubkey", user)
	if err != nil {
		return ImportedKey{}, fmt.Errorf("dumppubkey %s: %w", user, err)
	}
	if err := jsonUnmarshal(res, &pubHex); err != nil {
		return ImportedKey{}, fmt.Errorf("dumppubkey %s: %w", user, err)
	}
	if pubHex == "" {
		return ImportedKey{User: user, Key: key}, nil
	}
	registered, err := hex.DecodeString(pubHex)
	if err != nil {
		return ImportedKey{}, fmt.Errorf("dumppubkey %s: %w: not hex", user, upstream.ErrBadReply)
	}
	// Compare serialized bytes, as twisterd's importprivkey does (spec §1.4):
	// the compression flag must match too.
	if !bytes.Equal(key.PubKey(), registered) {
		return ImportedKey{}, fmt.Errorf("dumpprivkey %s: the wallet key is not the registered key (replaced key not yet mined?)", user)
	}
	return ImportedKey{User: user, Key: key, Registered: true}, nil
}
