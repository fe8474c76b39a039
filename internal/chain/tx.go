package chain

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	"github.com/twgroupd/twgroupd/internal/chainwire"
)

// Twisterd's limits (main.h).
const (
	maxSpamMsgChars = 140 // MAX_SPAM_MSG_SIZE, in UTF-8 characters
	maxUsernameSize = 16  // MAX_USERNAME_SIZE
)

// isSpam is CTransaction::IsSpamMessage: a non-empty message script.
func isSpam(tx *chainwire.Tx) bool { return len(tx.Message) > 0 }

// firstPush is CScript::ExtractPushDataString(0): "" when the script is not
// push-only or empty.
func firstPush(script []byte) []byte {
	p, err := chainwire.PushData(script)
	if err != nil || len(p) == 0 {
		return nil
	}
	return p[0]
}

// checkTx is main.cpp CheckTransaction, context free.
func checkTx(p *Params, tx *chainwire.Tx) error {
	if isSpam(tx) {
		msg := firstPush(tx.Message)
		if len(msg) == 0 {
			return fmt.Errorf("%w: invalid or empty spam message", ErrInvalid)
		}
		if !utf8.Valid(msg) {
			return fmt.Errorf("%w: spam message invalid utf8", ErrInvalid)
		}
		if utf8.RuneCount(msg) > maxSpamMsgChars {
			return fmt.Errorf("%w: spam message too big", ErrInvalid)
		}
		if u := firstPush(tx.UserName); len(u) == 0 || len(u) > maxUsernameSize {
			return fmt.Errorf("%w: spam user size invalid", ErrInvalid)
		}
	} else {
		if len(tx.UserName) == 0 || len(tx.PubKey) == 0 {
			return fmt.Errorf("%w: username or pubKey empty", ErrInvalid)
		}
		name, ok := chainwire.SmallString(tx.UserName)
		if !ok {
			return fmt.Errorf("%w: username not smallstring", ErrInvalid)
		}
		if err := checkUsername(name); err != nil {
			return err
		}
	}
	if n := len(tx.AppendTo(nil)); n > chainwire.MaxTxSize {
		return fmt.Errorf("%w: tx of %d bytes", ErrInvalid, n)
	}
	if !isSpam(tx) {
		// Spam txs carry the extranonce and need no PoW of their own.
		if err := checkProofOfWork(tx.Hash(), p.TxBits, p.PowLimit); err != nil {
			return fmt.Errorf("registration proof of work: %w", err)
		}
	}
	return nil
}

// checkUsername is main.cpp CheckUsername: 1..16 of a-z, 0-9, '_'.
func checkUsername(name string) error {
	if len(name) == 0 || len(name) > maxUsernameSize {
		return fmt.Errorf("%w: username %q size", ErrInvalid, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return fmt.Errorf("%w: username %q has invalid characters", ErrInvalid, name)
		}
	}
	return nil
}

// userHash is GetUsernameHash: sha256d of the serialized std::string.
func userHash(name string) chainwire.Hash {
	return chainwire.DoubleSHA256(chainwire.AppendVarBytes(nil, []byte(name)))
}

// checkBody is main.cpp CheckBlock minus the proof of work (checked with
// the header): size, spam tx first and only first, every tx, merkle root,
// no duplicate txid, no duplicate username.
func checkBody(p *Params, b *chainwire.Block) error {
	if len(b.Txs) == 0 {
		return fmt.Errorf("%w: block without transactions", ErrInvalid)
	}
	if n := len(b.AppendTo(nil)); n > chainwire.MaxBlockSize {
		return fmt.Errorf("%w: block of %d bytes", ErrInvalid, n)
	}
	if !isSpam(&b.Txs[0]) {
		return fmt.Errorf("%w: first tx is not the spam tx", ErrInvalid)
	}
	for i := 1; i < len(b.Txs); i++ {
		if isSpam(&b.Txs[i]) {
			return fmt.Errorf("%w: more than one spam tx", ErrInvalid)
		}
	}
	for i := range b.Txs {
		if err := checkTx(p, &b.Txs[i]); err != nil {
			return fmt.Errorf("tx %d: %w", i, err)
		}
	}
	if b.MerkleRoot() != b.Header.MerkleRoot {
		return fmt.Errorf("%w: merkle root mismatch", ErrInvalid)
	}
	txids := make(map[chainwire.Hash]bool, len(b.Txs))
	users := make(map[string]bool, len(b.Txs))
	for i := range b.Txs {
		id := b.Txs[i].Hash()
		if txids[id] {
			return fmt.Errorf("%w: duplicate transaction", ErrInvalid)
		}
		txids[id] = true
		if i > 0 {
			name, _ := chainwire.SmallString(b.Txs[i].UserName)
			if users[name] {
				return fmt.Errorf("%w: duplicate username %q", ErrInvalid, name)
			}
			users[name] = true
		}
	}
	return nil
}

// Record is what the chain keeps of one registration or key replacement.
type Record struct {
	User   string
	PubKey []byte // vData[0] of the pubKey script: the key of record
	Sig    []byte // vData[1]: the old key's signature of PubKey; nil for a registration
	Tx     []byte // the serialized transaction (for getrawtransaction)
}

// Spam is the block's spam message and its user.
type Spam struct {
	User    string
	Message string
}

// newBlockData keeps what the registry (and the spam check at connect)
// needs from a checked block.
func newBlockData(b *chainwire.Block) *blockData {
	recs, spam := extract(b)
	d := &blockData{Size: uint32(len(b.AppendTo(nil))), Spam: spam, SpamScript: bytes.Clone(b.Txs[0].Message), TxIDs: make([]chainwire.Hash, len(b.Txs)), Records: recs}
	if p, err := chainwire.PushData(b.Txs[0].UserName); err == nil && len(p) >= 2 {
		d.SpamSig = bytes.Clone(p[1])
	}
	for i := range b.Txs {
		d.TxIDs[i] = b.Txs[i].Hash()
	}
	return d
}

// extract keeps what the registry needs from a checked block.
func extract(b *chainwire.Block) ([]Record, Spam) {
	var recs []Record
	for i := 1; i < len(b.Txs); i++ {
		tx := &b.Txs[i]
		name, _ := chainwire.SmallString(tx.UserName)
		pushes, err := chainwire.PushData(tx.PubKey)
		r := Record{User: name, Tx: tx.AppendTo(nil)}
		if err == nil && len(pushes) >= 1 {
			r.PubKey = bytes.Clone(pushes[0])
		}
		if err == nil && len(pushes) >= 2 {
			r.Sig = bytes.Clone(pushes[1])
		}
		recs = append(recs, r)
	}
	return recs, Spam{User: string(firstPush(b.Txs[0].UserName)), Message: string(firstPush(b.Txs[0].Message))}
}
