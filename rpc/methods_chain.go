package rpc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/twgroupd/twgroupd/internal/chain"
	"github.com/twgroupd/twgroupd/internal/chainwire"
	"github.com/twgroupd/twgroupd/internal/tjson"
)

// Chain is the light blockchain (-registry=chain) behind getblockcount,
// getbestblockhash, getblockhash, getblock and getrawtransaction;
// *chain.Chain satisfies it. Without it those methods go upstream.
type Chain interface {
	Tip() chain.Tip
	HashAt(height int32) (chainwire.Hash, bool)
	Block(hash chainwire.Hash) (*chain.BlockInfo, error)
	UserEntries(user string) ([]chain.Entry, error)
}

// chainMethods are the rows for the table (twisterd 0.9.40's help texts,
// src/rpcblockchain.cpp and rpcrawtransaction.cpp).
func (s *Server) chainMethods() []*method {
	return []*method{
		{name: "getblockcount", minParams: 0, maxParams: 0, handler: s.getblockcount,
			help: "getblockcount\nReturns the number of blocks in the longest block chain."},
		{name: "getbestblockhash", minParams: 0, maxParams: 0, handler: s.getbestblockhash,
			help: "getbestblockhash\nReturns the hash of the best (tip) block in the longest block chain."},
		{name: "getblockhash", minParams: 1, maxParams: 1, handler: s.getblockhash,
			help: "getblockhash <index>\nReturns hash of block in best-block-chain at <index>."},
		{name: "getblock", minParams: 1, maxParams: 2, handler: s.getblock,
			help: "getblock <hash> [verbose=true]\n" +
				"If verbose is false, returns a string that is serialized, hex-encoded data for block <hash>.\n" +
				"If verbose is true, returns an Object with information about block <hash>."},
		{name: "getrawtransaction", minParams: 1, maxParams: 2, handler: s.getrawtransaction,
			help: "getrawtransaction <username> [verbose=0]\n" +
				"If verbose=0, returns a string that is\n" +
				"serialized, hex-encoded data for <txid>.\n" +
				"If verbose is non-zero, returns an Object\n" +
				"with information about transaction."},
		// network.html polls these; twgroupd never mines, so they say so.
		{name: "getmininginfo", minParams: 0, maxParams: 0, handler: s.getmininginfo,
			help: "getmininginfo\nReturns an object containing mining-related information."},
		{name: "getgenerate", minParams: 0, maxParams: 0, handler: s.getgenerate,
			help: "getgenerate\nReturns true or false."},
	}
}

// getmininginfo is twisterd's (rpcmining.cpp) for a node that does not
// mine: the chain's height and difficulty, no block template, no hashing,
// genproclimit at twisterd's default -1.
func (s *Server) getmininginfo(_ context.Context, _ params) (any, error) {
	if s.cfg.Chain == nil {
		return nil, noBackend("getmininginfo", "blockchain")
	}
	tip := s.cfg.Chain.Tip()
	var diff float64
	if bi, err := s.cfg.Chain.Block(tip.Hash); err == nil {
		diff = difficulty(bi.Header.Bits)
	}
	return tjson.Object{
		{Key: "blocks", Value: int64(tip.Height)},
		{Key: "currentblocksize", Value: 0},
		{Key: "currentblocktx", Value: 0},
		{Key: "difficulty", Value: realJSON(diff)},
		{Key: "errors", Value: ""},
		{Key: "generate", Value: false},
		{Key: "genproclimit", Value: -1},
		{Key: "hashespersec", Value: 0},
		{Key: "pooledtx", Value: 0},
		{Key: "testnet", Value: false},
	}, nil
}

func (s *Server) getgenerate(_ context.Context, _ params) (any, error) {
	if s.cfg.Chain == nil {
		return nil, noBackend("getgenerate", "blockchain")
	}
	return false, nil
}

func (s *Server) getblockcount(_ context.Context, _ params) (any, error) {
	if s.cfg.Chain == nil {
		return nil, noBackend("getblockcount", "blockchain")
	}
	return int64(s.cfg.Chain.Tip().Height), nil
}

func (s *Server) getbestblockhash(_ context.Context, _ params) (any, error) {
	if s.cfg.Chain == nil {
		return nil, noBackend("getbestblockhash", "blockchain")
	}
	return s.cfg.Chain.Tip().Hash.String(), nil
}

func (s *Server) getblockhash(_ context.Context, p params) (any, error) {
	if s.cfg.Chain == nil {
		return nil, noBackend("getblockhash", "blockchain")
	}
	var h int64
	if err := p.scan(&h); err != nil {
		return nil, err
	}
	if h < 0 || h > int64(s.cfg.Chain.Tip().Height) {
		return nil, &Error{Code: CodeMisc, Message: "Block number out of range."}
	}
	hash, ok := s.cfg.Chain.HashAt(int32(h))
	if !ok {
		return nil, &Error{Code: CodeMisc, Message: "Block number out of range."}
	}
	return hash.String(), nil
}

// getblock answers twisterd's blockToJSON. The light chain keeps no raw
// blocks, so verbose=false is refused (docs/chain.md).
func (s *Server) getblock(_ context.Context, p params) (any, error) {
	if s.cfg.Chain == nil {
		return nil, noBackend("getblock", "blockchain")
	}
	var hs string
	verbose := true
	if err := p.scan(&hs, &verbose); err != nil {
		return nil, err
	}
	notFound := &Error{Code: CodeInvalidAddressOrKey, Message: "Block not found"}
	hash, err := chainwire.ParseHash(hs)
	if err != nil {
		return nil, notFound
	}
	bi, err := s.cfg.Chain.Block(hash)
	if errors.Is(err, chain.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, fmt.Errorf("getblock: %w", err)
	}
	if !verbose {
		return nil, &Error{Code: CodeMisc, Message: "getblock: twgroupd's light chain keeps no raw blocks (use verbose=true)"}
	}
	tip := s.cfg.Chain.Tip()
	conf := int64(0)
	if bi.OnMain {
		conf = int64(tip.Height-bi.Height) + 1
	}
	txs := make([]string, len(bi.TxIDs))
	for i, id := range bi.TxIDs {
		txs[i] = id.String()
	}
	userhashes := make([]string, len(bi.Users))
	for i, u := range bi.Users {
		userhashes[i] = chainwire.DoubleSHA256(chainwire.AppendVarBytes(nil, []byte(u))).String()
	}
	users := append([]string{}, bi.Users...)
	out := tjson.Object{
		{Key: "hash", Value: bi.Hash.String()},
		{Key: "confirmations", Value: conf},
		{Key: "size", Value: bi.Size},
		{Key: "height", Value: bi.Height},
		{Key: "version", Value: bi.Header.Version},
		{Key: "merkleroot", Value: bi.Header.MerkleRoot.String()},
		{Key: "tx", Value: txs},
		{Key: "spamMessage", Value: bi.Spam.Message},
		{Key: "spamUser", Value: bi.Spam.User},
		{Key: "userhashes", Value: userhashes},
		{Key: "usernames", Value: users},
		{Key: "time", Value: int64(bi.Header.Time)},
		{Key: "nonce", Value: uint64(bi.Header.Nonce)},
		{Key: "bits", Value: fmt.Sprintf("%08x", bi.Header.Bits)},
		{Key: "difficulty", Value: realJSON(difficulty(bi.Header.Bits))},
	}
	if bi.Height > 0 {
		out = append(out, tjson.Field{Key: "previousblockhash", Value: bi.Header.PrevBlock.String()})
	}
	if !bi.Next.IsZero() {
		out = append(out, tjson.Field{Key: "nextblockhash", Value: bi.Next.String()})
	}
	return out, nil
}

// difficulty is bitcoin's GetDifficulty: the 0x1d00ffff target over nBits'.
func difficulty(bits uint32) float64 {
	shift := (bits >> 24) & 0xff
	mant := bits & 0x00ffffff
	if mant == 0 {
		return 0
	}
	d := float64(0x0000ffff) / float64(mant)
	for ; shift < 29; shift++ {
		d *= 256
	}
	for ; shift > 29; shift-- {
		d /= 256
	}
	return d
}

// getrawtransaction answers as twisterd: the user's latest registration or
// key replacement, looked up by username; "txid" is twisterd's userhash,
// not the transaction hash (shared/chain README).
func (s *Server) getrawtransaction(_ context.Context, p params) (any, error) {
	if s.cfg.Chain == nil {
		return nil, noBackend("getrawtransaction", "blockchain")
	}
	var user string
	var verbose int64
	if err := p.scan(&user, &verbose); err != nil {
		return nil, err
	}
	es, err := s.cfg.Chain.UserEntries(user)
	if errors.Is(err, chain.ErrNotFound) || (err == nil && len(es) == 0) {
		return nil, &Error{Code: CodeInvalidAddressOrKey, Message: "No information available about transaction"}
	}
	if err != nil {
		return nil, fmt.Errorf("getrawtransaction: %w", err)
	}
	e := es[len(es)-1]
	hexTx := hex.EncodeToString(e.Tx)
	if verbose == 0 {
		return hexTx, nil
	}
	tx, err := chainwire.ParseTx(e.Tx)
	if err != nil {
		return nil, fmt.Errorf("getrawtransaction: stored tx: %w", err)
	}
	first := func(script []byte) string {
		ps, err := chainwire.PushData(script)
		if err != nil || len(ps) == 0 {
			return ""
		}
		return string(ps[0])
	}
	out := tjson.Object{
		{Key: "hex", Value: hexTx},
		{Key: "txid", Value: chainwire.DoubleSHA256(chainwire.AppendVarBytes(nil, []byte(user))).String()},
		{Key: "version", Value: tx.Version},
		{Key: "message", Value: first(tx.Message)},
		{Key: "username", Value: first(tx.UserName)},
	}
	if ps, err := chainwire.PushData(tx.PubKey); err == nil {
		keys := make([]string, len(ps))
		for i, k := range ps {
			keys[i] = hex.EncodeToString(k)
		}
		out = append(out, tjson.Field{Key: "pubKey", Value: keys})
	}
	out = append(out, tjson.Field{Key: "nonce", Value: int32(tx.Nonce)}) // twisterd casts to int
	out = append(out, tjson.Field{Key: "blockhash", Value: e.Block.String()})
	tip := s.cfg.Chain.Tip()
	var t int64
	if bi, err := s.cfg.Chain.Block(e.Block); err == nil {
		t = int64(bi.Header.Time)
	}
	out = append(out,
		tjson.Field{Key: "height", Value: e.Height},
		tjson.Field{Key: "confirmations", Value: int64(tip.Height-e.Height) + 1},
		tjson.Field{Key: "time", Value: t},
		tjson.Field{Key: "blocktime", Value: t})
	return out, nil
}
