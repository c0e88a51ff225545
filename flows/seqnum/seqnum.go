// Package seqnum is TCP sequence-number arithmetic: 32-bit serial numbers that
// wrap around (RFC 793 section 3.3, RFC 1982). All comparisons of sequence
// and acknowledgement numbers in wiremortem go through this package.
package seqnum

// Value is a TCP sequence or acknowledgement number.
type Value uint32

// Size is a length in sequence space.
type Size uint32

// LessThan reports whether v comes before w, taking wrap-around into
// account: v < w when w is less than 2^31 ahead of v.
func (v Value) LessThan(w Value) bool { return int32(v-w) < 0 }

// LessThanEq reports whether v comes before w or equals it.
func (v Value) LessThanEq(w Value) bool { return v == w || v.LessThan(w) }

// InRange reports whether a <= v < b.
func (v Value) InRange(a, b Value) bool { return v-a < b-a }

// Add returns v advanced by s.
func (v Value) Add(s Size) Value { return v + Value(s) }

// Sub returns how far v is ahead of w; negative when v is behind.
func (v Value) Sub(w Value) int64 { return int64(int32(v - w)) }

// Max returns whichever of v and w comes later.
func Max(v, w Value) Value {
	if v.LessThan(w) {
		return w
	}
	return v
}
