package rpc

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/twgroupd/twgroupd/internal/tjson"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// Wallet and key methods (spec §1.4, §8.4).

// registeredKey asks the registry for user's key at the best height; ok is
// false when the user is not registered.
func (s *Server) registeredKey(ctx context.Context, method, user string) (twproto.UserKey, bool, error) {
	if s.cfg.Registry == nil {
		return twproto.UserKey{}, false, noBackend(method, "user registry")
	}
	best, err := s.cfg.Registry.BestHeight(ctx)
	if err != nil {
		return twproto.UserKey{}, false, fmt.Errorf("%s: best height: %w", method, err)
	}
	uk, err := s.cfg.Registry.UserKey(ctx, user, best)
	if errors.Is(err, twproto.ErrUnknownUser) {
		return twproto.UserKey{}, false, nil
	}
	if err != nil {
		return twproto.UserKey{}, false, fmt.Errorf("%s: look up %q: %w", method, user, err)
	}
	return uk, true, nil
}

func (s *Server) createwalletuser(ctx context.Context, p params) (any, error) {
	var name string
	replace := false
	if err := p.scan(&name, &replace); err != nil {
		return nil, err
	}
	if s.cfg.Wallet == nil {
		return nil, noBackend("createwalletuser", "wallet")
	}
	// Same order of checks as twisterd's createwalletuser.
	_, err := s.cfg.Wallet.Key(name)
	inWallet := err == nil || errors.Is(err, wallet.ErrKeyNotKnown)
	if err != nil && !inWallet && !errors.Is(err, wallet.ErrUserNotFound) {
		return nil, err
	}
	if inWallet && !replace {
		return nil, wallet.ErrUserExists
	}
	if !inWallet && replace {
		return nil, &Error{Code: CodeWalletAccountName, Message: "Error: replacekey given but old key not in wallet"}
	}
	if replace {
		return nil, &Error{Code: CodeWallet, Message: "Error: replacekey is not supported by twgroupd"}
	}
	if _, registered, err := s.registeredKey(ctx, "createwalletuser", name); err != nil {
		return nil, err
	} else if registered {
		return nil, wallet.ErrUserInChain
	}
	key, err := s.cfg.Wallet.CreateUser(name)
	if err != nil {
		return nil, err
	}
	return key.WIF(), nil
}

// sendnewusertransaction registers a wallet user in the registry. Its
// checks and messages are twisterd's (src/rpcrawtransaction.cpp).
func (s *Server) sendnewusertransaction(ctx context.Context, p params) (any, error) {
	if tjson.KindOf(p[0]) != tjson.KindString {
		return nil, &Error{Code: CodeInvalidParameter, Message: "username must be string"}
	}
	name, err := p.str(0)
	if err != nil {
		return nil, err
	}
	if s.cfg.Registrar == nil {
		return nil, noBackend("sendnewusertransaction", "registrar")
	}
	if s.cfg.Wallet == nil {
		return nil, noBackend("sendnewusertransaction", "wallet")
	}
	key, err := s.cfg.Wallet.Key(name)
	switch {
	case errors.Is(err, wallet.ErrUserNotFound):
		return nil, &Error{Code: CodeWalletAccountName, Message: "Error: username must exist in wallet"}
	case errors.Is(err, wallet.ErrKeyNotKnown):
		return nil, &Error{Code: CodeWalletAccountName, Message: "Error: no public key found"}
	case err != nil:
		return nil, err
	}
	if _, registered, err := s.registeredKey(ctx, "sendnewusertransaction", name); err != nil {
		return nil, err
	} else if registered {
		return nil, wallet.ErrUserInChain
	}
	return s.cfg.Registrar.RegisterUser(ctx, name, key.PubKey())
}

func (s *Server) importprivkey(ctx context.Context, p params) (any, error) {
	var wif, name string
	rescan, allowNewUser := true, false // rescan is parsed and, as in twisterd, does nothing
	if err := p.scan(&wif, &name, &rescan, &allowNewUser); err != nil {
		return nil, err
	}
	key, err := twproto.ParseWIF(wif)
	if err != nil {
		return nil, wallet.ErrInvalidKey
	}
	if s.cfg.Wallet == nil {
		return nil, noBackend("importprivkey", "wallet")
	}
	uk, registered, err := s.registeredKey(ctx, "importprivkey", name)
	if err != nil {
		return nil, err
	}
	if !registered && !allowNewUser {
		return nil, wallet.ErrUserMustExist
	}
	// Serialized bytes are compared, so a WIF whose compression flag differs
	// from the registered key is a mismatch too (spec §1.4).
	if registered && !bytes.Equal(uk.PubKey, key.PubKey()) {
		return nil, wallet.ErrKeyMismatch
	}
	return nil, s.cfg.Wallet.ImportUserKey(name, key)
}

func (s *Server) dumpprivkey(_ context.Context, p params) (any, error) {
	var name string
	if err := p.scan(&name); err != nil {
		return nil, err
	}
	if s.cfg.Wallet == nil {
		return nil, noBackend("dumpprivkey", "wallet")
	}
	key, err := s.cfg.Wallet.Key(name)
	if err != nil {
		return nil, err
	}
	return key.WIF(), nil
}

// dumppubkey reads only the registry, never the wallet (spec §1.4): local
// unregistered users and group aliases give "".
func (s *Server) dumppubkey(ctx context.Context, p params) (any, error) {
	var name string
	if err := p.scan(&name); err != nil {
		return nil, err
	}
	uk, registered, err := s.registeredKey(ctx, "dumppubkey", name)
	if err != nil {
		return nil, err
	}
	if !registered {
		return "", nil
	}
	return hex.EncodeToString(uk.PubKey), nil
}

func (s *Server) listwalletusers(_ context.Context, _ params) (any, error) {
	if s.cfg.Wallet == nil {
		return nil, noBackend("listwalletusers", "wallet")
	}
	users, err := s.cfg.Wallet.Users()
	if err != nil {
		return nil, err
	}
	return nonNil(users), nil
}
