package swarm

import (
	"crypto/rand"
	"fmt"
	"math/big"
)

// peerIDPrefix is twisterd's fingerprint ("TW", 1,0,0,0); twisterd never
// checks it, we use it so our handshake is indistinguishable from its own
// (dht-swarm §4.3).
const peerIDPrefix = "-TW1000-"

// urlRandomChars is libtorrent's url_random alphabet [lt/src/string_util.cpp].
const urlRandomChars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_.!~*()"

// newPeerID returns a fresh per-process peer id like twisterd's.
func newPeerID() ([20]byte, error) {
	var id [20]byte
	copy(id[:], peerIDPrefix)
	max := big.NewInt(int64(len(urlRandomChars)))
	for i := len(peerIDPrefix); i < len(id); i++ {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return id, fmt.Errorf("peer id: %w", err)
		}
		id[i] = urlRandomChars[n.Int64()]
	}
	return id, nil
}
