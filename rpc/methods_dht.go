package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// DHT methods (spec §8.4, dht-swarm §3.6).

// twisterd's dhtget defaults.
const (
	dhtgetTimeout      = 10 * time.Second
	dhtgetTimeoutMulti = 100 * time.Millisecond
	dhtgetMinMulti     = 3
)

func (s *Server) dhtget(ctx context.Context, p params) (any, error) {
	var user, resource, kind string
	timeoutMs, timeoutMultiMs := dhtgetTimeout.Milliseconds(), dhtgetTimeoutMulti.Milliseconds()
	minMulti := int64(dhtgetMinMulti)
	if err := p.scan(&user, &resource, &kind, &timeoutMs, &timeoutMultiMs, &minMulti); err != nil {
		return nil, err
	}
	timeout := time.Duration(timeoutMs) * time.Millisecond
	timeoutMulti := time.Duration(timeoutMultiMs) * time.Millisecond
	if s.cfg.DHT == nil {
		return nil, noBackend("dhtget", "DHT")
	}
	items, err := s.cfg.DHT.Get(ctx, user, resource, kind == "m", timeout, timeoutMulti, int(minMulti))
	if err != nil {
		return nil, err
	}
	result := make([]json.RawMessage, 0, len(items))
	for _, raw := range items {
		item, err := twproto.HexcapeDHTItem(raw)
		if err != nil {
			return nil, fmt.Errorf("dhtget: render item: %w", err)
		}
		result = append(result, item)
	}
	return result, nil
}

func (s *Server) dhtput(ctx context.Context, p params) (any, error) {
	var user, resource, kind, sigUser string
	var value json.RawMessage
	if err := p.scan(&user, &resource, &kind, &value, &sigUser); err != nil {
		return nil, err
	}
	if s.cfg.DHT == nil {
		return nil, noBackend("dhtput", "DHT")
	}
	if s.cfg.Wallet == nil {
		return nil, noBackend("dhtput", "wallet")
	}
	// twisterd's checks, in its order, before going to the DHT.
	if _, err := s.cfg.Wallet.Key(sigUser); err != nil {
		switch {
		case errors.Is(err, wallet.ErrUserNotFound):
			return nil, &Error{Code: CodeWalletAccountName, Message: "Error: no sig_user in wallet"}
		case errors.Is(err, wallet.ErrKeyNotKnown):
			return nil, &Error{Code: CodeWallet, Message: "Private key of sig_user not available"}
		}
		return nil, err
	}
	multi := kind == "m"
	if !multi && len(p) != 6 {
		return nil, &Error{Code: CodeWallet, Message: "Seq parameter required for single"}
	}
	seq := int64(-1)
	if len(p) == 6 {
		var err error
		if seq, err = p.integer(5); err != nil {
			return nil, err
		}
	}
	if !multi && user != sigUser {
		return nil, &Error{Code: CodeWallet, Message: "Username must be the same as sig_user for single"}
	}
	return nil, s.cfg.DHT.Put(ctx, user, resource, multi, value, sigUser, seq)
}
