package chainwire

import (
	"encoding/binary"
	"fmt"
)

// reader decodes from a byte slice; the first error sticks and every later
// read returns zero values, so decoders check once at the end.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format+" at offset %d", append([]any{ErrMalformed}, append(args, r.off)...)...)
	}
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.fail("need %d bytes, have %d", n, len(r.b)-r.off)
		return nil
	}
	out := r.b[r.off : r.off+n]
	r.off += n
	return out
}

func (r *reader) u8() uint8 {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u16() uint16 {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

func (r *reader) u32() uint32 {
	b := r.bytes(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (r *reader) u64() uint64 {
	b := r.bytes(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

func (r *reader) hash() Hash {
	var h Hash
	copy(h[:], r.bytes(32))
	return h
}

// compactSize reads bitcoin's CompactSize and requires the minimal
// encoding, as bitcoin's ReadCompactSize does ("non-canonical").
func (r *reader) compactSize() uint64 {
	first := r.u8()
	var n uint64
	switch first {
	case 0xfd:
		n = uint64(r.u16())
		if r.err == nil && n < 0xfd {
			r.fail("non-canonical compact size")
		}
	case 0xfe:
		n = uint64(r.u32())
		if r.err == nil && n <= 0xffff {
			r.fail("non-canonical compact size")
		}
	case 0xff:
		n = r.u64()
		if r.err == nil && n <= 0xffffffff {
			r.fail("non-canonical compact size")
		}
	default:
		n = uint64(first)
	}
	return n
}

// count reads a CompactSize element count, refusing more than max or more
// than the remaining bytes could hold at minSize bytes each.
func (r *reader) count(max int, minSize int, what string) int {
	n := r.compactSize()
	if r.err != nil {
		return 0
	}
	if n > uint64(max) {
		r.fail("%d %s (max %d)", n, what, max)
		return 0
	}
	if minSize > 0 && n*uint64(minSize) > uint64(len(r.b)-r.off) {
		r.fail("%d %s do not fit in %d bytes", n, what, len(r.b)-r.off)
		return 0
	}
	return int(n)
}

// varBytes reads CompactSize length + bytes (at most max).
func (r *reader) varBytes(max int, what string) []byte {
	n := r.count(max, 1, what+" bytes")
	if r.err != nil {
		return nil
	}
	b := r.bytes(n)
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// done fails if bytes are left over: twisterd's messages have no trailers we
// know of, and round trips must be exact.
func (r *reader) done(what string) error {
	if r.err == nil && r.off != len(r.b) {
		r.fail("%d trailing bytes after %s", len(r.b)-r.off, what)
	}
	return r.err
}

// AppendCompactSize appends bitcoin's CompactSize encoding of n.
func AppendCompactSize(dst []byte, n uint64) []byte {
	switch {
	case n < 0xfd:
		return append(dst, byte(n))
	case n <= 0xffff:
		return binary.LittleEndian.AppendUint16(append(dst, 0xfd), uint16(n))
	case n <= 0xffffffff:
		return binary.LittleEndian.AppendUint32(append(dst, 0xfe), uint32(n))
	default:
		return binary.LittleEndian.AppendUint64(append(dst, 0xff), n)
	}
}

// AppendVarBytes appends CompactSize(len(b)) || b (twisterd's
// serialization of a std::string, std::vector<char> or CScript).
func AppendVarBytes(dst, b []byte) []byte {
	return append(AppendCompactSize(dst, uint64(len(b))), b...)
}
