package rpc

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/twgroupd/twgroupd/dm"
)

// RawPoster is what newpostraw needs besides Swarm; *swarm.Swarm has it.
// A Swarm backend without it answers newpostraw as not configured.
type RawPoster interface {
	// NumPieces is -1 when the node holds no swarm for user.
	NumPieces(user string) int
	HasPiece(user string, k int64) bool
	// Publish validates post as piece k of user (acceptSignedPost's
	// checks), stores it, announces it (HAVE) and hands it to the engine
	// like a piece received from a peer.
	Publish(ctx context.Context, user string, k int64, post []byte) error
}

// newpostraw is twisterd's `newpostraw <username> <k> <hexdata>`: an
// already signed post (the piece's bencoded bytes) added to user's swarm,
// as twisterd's add_piece. Unlike twisterd, which drops a bad piece
// silently, a post that fails validation is refused with acceptSignedPost's
// message (−32602), a taken k with "k already used", and a user whose
// swarm this node does not hold with −8 (docs/rpc.md).
func (s *Server) newpostraw(ctx context.Context, p params) (any, error) {
	var user, data string
	var k int64
	if err := p.scan(&user, &k, &data); err != nil {
		return nil, err
	}
	rp, ok := s.cfg.Swarm.(RawPoster)
	if s.cfg.Swarm == nil || !ok {
		return nil, noBackend("newpostraw", "swarm")
	}
	// ParseHexV(params[2], "data"): an empty or odd-length string is not hex.
	raw, err := hex.DecodeString(data)
	if err != nil || len(raw) == 0 {
		return nil, &Error{Code: CodeInvalidParameter, Message: fmt.Sprintf("data must be hexadecimal string (not '%s')", data)}
	}
	if rp.NumPieces(user) < 0 {
		return nil, &Error{Code: CodeInvalidParameter, Message: fmt.Sprintf("newpostraw: this node holds no swarm for '%s' (follow the user first)", user)}
	}
	if rp.HasPiece(user, k) {
		return nil, &dm.KUsedError{User: user, K: k}
	}
	if err := rp.Publish(ctx, user, k, raw); err != nil {
		return nil, err
	}
	return nil, nil
}
