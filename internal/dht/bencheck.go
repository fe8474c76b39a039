package dht

import (
	"errors"
	"fmt"
	"strconv"
)

// twisterd's limits for decoding a DHT datagram (dht-swarm §1:
// lazy_bdecode(..., 10, 500)).
const (
	maxPacketDepth = 10
	maxPacketItems = 500
)

var errBencode = errors.New("malformed bencode")

// checkBencode verifies that b is exactly one well-formed bencoded value,
// nested at most maxDepth containers deep and holding at most maxItems
// values (every dict value and list element counts; keys do not), and
// returns the number of items. It runs before anacrolix's decoder so that
// hostile datagrams cannot make it recurse or allocate beyond these bounds.
func checkBencode(b []byte, maxDepth, maxItems int) (int, error) {
	type frame struct{ dict, wantKey bool }
	var stackBuf [16]frame
	stack := stackBuf[:0]
	items := 0
	i := 0
	for {
		if i >= len(b) {
			return 0, fmt.Errorf("%w: truncated", errBencode)
		}
		c := b[i]
		if n := len(stack); n > 0 {
			top := &stack[n-1]
			if c == 'e' {
				if top.dict && !top.wantKey {
					return 0, fmt.Errorf("%w: dict key without value", errBencode)
				}
				stack = stack[:n-1]
				i++
				if len(stack) == 0 {
					break
				}
				continue
			}
			if top.dict {
				if top.wantKey {
					if c < '0' || c > '9' {
						return 0, fmt.Errorf("%w: dict key is not a string", errBencode)
					}
					next, err := scanString(b, i)
					if err != nil {
						return 0, err
					}
					i = next
					top.wantKey = false
					continue
				}
				top.wantKey = true
			}
			items++
			if items > maxItems {
				return 0, fmt.Errorf("%w: more than %d items", errBencode, maxItems)
			}
		}
		switch {
		case c == 'd' || c == 'l':
			if len(stack) >= maxDepth {
				return 0, fmt.Errorf("%w: nested deeper than %d", errBencode, maxDepth)
			}
			stack = append(stack, frame{dict: c == 'd', wantKey: true})
			i++
			continue
		case c == 'i':
			next, err := scanInt(b, i)
			if err != nil {
				return 0, err
			}
			i = next
		case c >= '0' && c <= '9':
			next, err := scanString(b, i)
			if err != nil {
				return 0, err
			}
			i = next
		default:
			return 0, fmt.Errorf("%w: unexpected byte %q at %d", errBencode, c, i)
		}
		if len(stack) == 0 {
			break
		}
	}
	if i != len(b) {
		return 0, fmt.Errorf("%w: %d trailing bytes", errBencode, len(b)-i)
	}
	return items, nil
}

// scanString returns the offset just past the string starting at b[i].
func scanString(b []byte, i int) (int, error) {
	j := i
	for j < len(b) && j-i < 8 && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	if j >= len(b) || b[j] != ':' || j == i {
		return 0, fmt.Errorf("%w: bad string length at %d", errBencode, i)
	}
	n, err := strconv.Atoi(string(b[i:j]))
	if err != nil {
		return 0, fmt.Errorf("%w: bad string length at %d", errBencode, i)
	}
	j++
	if n > len(b)-j {
		return 0, fmt.Errorf("%w: string of %d bytes runs past the end", errBencode, n)
	}
	return j + n, nil
}

// scanInt returns the offset just past the integer starting at b[i] ('i').
func scanInt(b []byte, i int) (int, error) {
	j := i + 1
	for j < len(b) && j-i < 22 && b[j] != 'e' {
		j++
	}
	if j >= len(b) || b[j] != 'e' {
		return 0, fmt.Errorf("%w: unterminated integer at %d", errBencode, i)
	}
	if _, err := strconv.ParseInt(string(b[i+1:j]), 10, 64); err != nil {
		return 0, fmt.Errorf("%w: bad integer at %d", errBencode, i)
	}
	return j + 1, nil
}
