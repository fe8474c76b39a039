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
	user, err := p.str(0)
	if err != nil {
		return nil, err
	}
	resource, err := p.str(1)
	if err != nil {
		return nil, err
	}
	kind, err := p.str(2)
	if err != nil {
		return nil, err
	}
	timeout, timeoutMulti, minMulti := dhtgetTimeout, dhtgetTimeoutMulti, int64(dhtgetMinMulti)
	if p.has(3) {
		ms, err := p.integer(3)
		if err != nil {
			return nil, err
		}
		timeout = time.Duration(ms) * time.Millisecond
	}
	if p.has(4) {
		ms, err := p.integer(4)
		if err != nil {
			return nil, err
		}
		timeoutMulti = time.Duration(ms) * time.Millisecond
	}
	if p.has(5) {
		if minMulti, err = p.integer(5); err != nil {
			return nil, err
		}
	}
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
	user, err := p.str(0)
	if err != nil {
		return nil, err
	}
	resource, err := p.str(1)
	if err != nil {
		return nil, err
	}
	kind, err := p.str(2)
	if err != nil {
		return nil, err
	}
	value := json.RawMessage(trimJSON(p[3]))
	sigUser, err := p.str(4)
	if err != nil {
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
		if seq, err = p.integer(5); err != nil {
			return nil, err
		}
	}
	if !multi && user != sigUser {
		return nil, &Error{Code: CodeWallet, Message: "Username must be the same as sig_user for single"}
	}
	return nil, s.cfg.DHT.Put(ctx, user, resource, multi, value, sigUser, seq)
}
