package twproto

import "crypto/sha1"

// TargetHash is SHA1(bencode({"n":n,"r":r,"t":t})), the DHT target of a
// resource (dht-swarm §3.1).
func TargetHash(n, r, t string) [20]byte {
	b := []byte{'d'}
	b = appendString(b, []byte("n"))
	b = appendString(b, []byte(n))
	b = appendString(b, []byte("r"))
	b = appendString(b, []byte(r))
	b = appendString(b, []byte("t"))
	b = appendString(b, []byte(t))
	b = append(b, 'e')
	return sha1.Sum(b)
}

// SwarmInfoHash is the info-hash of user's post swarm (spec §3.5).
func SwarmInfoHash(user string) [20]byte { return TargetHash(user, "tracker", "m") }
