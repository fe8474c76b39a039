// Package chainwire is twister's blockchain P2P wire (twister-core 0.9.40,
// bitcoin 0.8 style): the 24-byte message framing and the messages a light
// client exchanges with twisterd (version/verack, ping/pong, getaddr/addr,
// getheaders/headers, getblocks/inv/getdata/notfound, block, tx, cp), plus
// twister's 84-byte block header and its input-less transactions. It only
// encodes and decodes; validation lives in internal/chain. Every decoder
// bounds counts and lengths before allocating (docs/chain.md).
package chainwire

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Magic is twister mainnet's message start (chainparams.cpp pchMessageStart).
var Magic = [4]byte{0xf0, 0xda, 0xbb, 0xd2}

const (
	// HeaderSize is the framing header: magic, command, length, checksum.
	HeaderSize = 24
	// CommandSize is the NUL-padded command field.
	CommandSize = 12
	// ProtocolVersion is twisterd 0.9.40's PROTOCOL_VERSION.
	ProtocolVersion = 70003
	// DefaultPort is twister mainnet's P2P port.
	DefaultPort = 28333
	// MaxBlockSize is twisterd's MAX_BLOCK_SIZE (main.h): a block message
	// larger than that is invalid.
	MaxBlockSize = 50000
	// MaxInv is twisterd's MAX_INV_SZ: items per inv/getdata/notfound.
	MaxInv = 50000
	// MaxHeaders is what one headers answer may carry (twisterd sends up
	// to 2000).
	MaxHeaders = 2000
	// MaxAddr is the most addresses one addr message may carry.
	MaxAddr = 1000
	// MaxLocator bounds a getheaders/getblocks locator (bitcoin uses ~30).
	MaxLocator = 500
	// MaxTxSize is twisterd's CheckTransaction size limit.
	MaxTxSize = 512
	// MaxPayload is the largest payload ReadMessage accepts by default:
	// a full inv (MaxInv*36 + 9) fits, nothing much bigger.
	MaxPayload = MaxInv*36 + 9
)

// Errors returned by ReadMessage and the decoders; wrapped with context.
var (
	ErrBadMagic    = errors.New("chainwire: bad magic")
	ErrBadCommand  = errors.New("chainwire: bad command")
	ErrTooLarge    = errors.New("chainwire: message too large")
	ErrBadChecksum = errors.New("chainwire: bad checksum")
	ErrMalformed   = errors.New("chainwire: malformed payload")
)

// Hash is a 256-bit hash in internal (wire) byte order; String prints it
// reversed, as twisterd displays it.
type Hash [32]byte

// String is the display (byte-reversed) hex.
func (h Hash) String() string {
	var r [32]byte
	for i := range h {
		r[31-i] = h[i]
	}
	return fmt.Sprintf("%x", r[:])
}

// IsZero reports whether h is all zero.
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash reads a display-order hex hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 64 {
		return h, fmt.Errorf("hash %q: want 64 hex digits", s)
	}
	var b [32]byte
	for i := 0; i < 32; i++ {
		v, ok := hexByte(s[2*i], s[2*i+1])
		if !ok {
			return h, fmt.Errorf("hash %q: not hex", s)
		}
		b[i] = v
	}
	for i := range b {
		h[31-i] = b[i]
	}
	return h, nil
}

func hexByte(a, b byte) (byte, bool) {
	x, ok1 := hexNibble(a)
	y, ok2 := hexNibble(b)
	return x<<4 | y, ok1 && ok2
}

func hexNibble(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// DoubleSHA256 is bitcoin's sha256d.
func DoubleSHA256(b []byte) Hash {
	first := sha256.Sum256(b)
	return Hash(sha256.Sum256(first[:]))
}

// Checksum is the framing checksum: the first 4 bytes of sha256d(payload).
func Checksum(payload []byte) [4]byte {
	h := DoubleSHA256(payload)
	return [4]byte{h[0], h[1], h[2], h[3]}
}

// AppendFrame appends one framed message to dst.
func AppendFrame(dst []byte, command string, payload []byte) ([]byte, error) {
	if err := checkCommand([]byte(command)); err != nil || len(command) == 0 || len(command) > CommandSize {
		return dst, fmt.Errorf("%w: %q", ErrBadCommand, command)
	}
	dst = append(dst, Magic[:]...)
	var cmd [CommandSize]byte
	copy(cmd[:], command)
	dst = append(dst, cmd[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	sum := Checksum(payload)
	dst = append(dst, sum[:]...)
	return append(dst, payload...), nil
}

// WriteMessage frames m and writes it in one Write.
func WriteMessage(w io.Writer, m Message) error {
	frame, err := AppendFrame(nil, m.Command(), m.Encode(nil))
	if err != nil {
		return err
	}
	if _, err := w.Write(frame); err != nil {
		return fmt.Errorf("write %s: %w", m.Command(), err)
	}
	return nil
}

// checkCommand accepts twisterd's rule (CMessageHeader::IsValid): printable
// ASCII, then only NUL padding.
func checkCommand(c []byte) error {
	end := bytes.IndexByte(c, 0)
	if end < 0 {
		end = len(c)
	}
	for i, b := range c {
		if i < end && (b < 0x20 || b > 0x7e) {
			return ErrBadCommand
		}
		if i >= end && b != 0 {
			return ErrBadCommand
		}
	}
	if end == 0 {
		return ErrBadCommand
	}
	return nil
}

// FrameHeader is a decoded 24-byte message header.
type FrameHeader struct {
	Command  string
	Length   uint32
	Checksum [4]byte
}

// ParseFrameHeader decodes a 24-byte header; it checks the magic, the
// command and that Length <= maxPayload (MaxPayload if <= 0).
func ParseFrameHeader(b []byte, maxPayload int) (FrameHeader, error) {
	var fh FrameHeader
	if len(b) != HeaderSize {
		return fh, fmt.Errorf("%w: header of %d bytes", ErrMalformed, len(b))
	}
	if !bytes.Equal(b[:4], Magic[:]) {
		return fh, fmt.Errorf("%w: %x", ErrBadMagic, b[:4])
	}
	cmd := b[4:16]
	if err := checkCommand(cmd); err != nil {
		return fh, fmt.Errorf("%w: %q", ErrBadCommand, cmd)
	}
	if maxPayload <= 0 {
		maxPayload = MaxPayload
	}
	fh.Command = string(bytes.TrimRight(cmd, "\x00"))
	fh.Length = binary.LittleEndian.Uint32(b[16:20])
	copy(fh.Checksum[:], b[20:24])
	if uint64(fh.Length) > uint64(maxPayload) {
		return fh, fmt.Errorf("%w: %s of %d bytes (max %d)", ErrTooLarge, fh.Command, fh.Length, maxPayload)
	}
	return fh, nil
}

// ReadFrame reads one message and checks its checksum; the payload is never
// bigger than maxPayload (MaxPayload if <= 0), checked before allocating.
func ReadFrame(r io.Reader, maxPayload int) (string, []byte, error) {
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return "", nil, err
	}
	fh, err := ParseFrameHeader(hb[:], maxPayload)
	if err != nil {
		return "", nil, err
	}
	payload := make([]byte, fh.Length)
	if _, err := io.ReadFull(r, payload); err != nil {
		return fh.Command, nil, fmt.Errorf("read %s payload: %w", fh.Command, err)
	}
	if Checksum(payload) != fh.Checksum {
		return fh.Command, nil, fmt.Errorf("%w: %s", ErrBadChecksum, fh.Command)
	}
	return fh.Command, payload, nil
}

// ReadMessage reads and decodes one message. Unknown commands come back as
// *MsgUnknown (twisterd ignores them too).
func ReadMessage(r io.Reader, maxPayload int) (Message, error) {
	cmd, payload, err := ReadFrame(r, maxPayload)
	if err != nil {
		return nil, err
	}
	return Decode(cmd, payload)
}
