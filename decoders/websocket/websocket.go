// Package websocket decodes RFC 6455 frames from the two in-order byte
// streams of an upgraded conversation: frames, messages (fragmented or
// not, permessage-deflate per RFC 7692 undone), close handshakes with their
// codes and reasons, ping/pong round trips, and every protocol violation,
// flagged and never fatal. Frame headers may arrive split at any byte;
// memory per conversation is bounded whatever the messages' sizes.
package websocket

import (
	"time"

	"wiremortem/evidence"
)

// Side is the sender of a frame: the client (which must mask, RFC 6455
// section 5.1) or the server (which must not). It is evidence.Side, as
// the tracker's.
type Side = evidence.Side

const (
	Client = evidence.Client
	Server = evidence.Server
)

// Opcodes (RFC 6455 section 5.2).
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

// OpcodeName names an opcode; reserved ones are "reserved-0x3" and so on.
func OpcodeName(op uint8) string {
	switch op {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return "reserved-0x" + string("0123456789abcdef"[op&15])
}

// Deflate is the negotiated permessage-deflate extension (RFC 7692).
type Deflate struct {
	// ClientNoContextTakeover and ServerNoContextTakeover: the sender
	// resets its compression context after each message.
	ClientNoContextTakeover bool `json:"client_no_context_takeover,omitempty"`
	ServerNoContextTakeover bool `json:"server_no_context_takeover,omitempty"`
	// ClientMaxWindowBits and ServerMaxWindowBits (8 to 15; 0 means 15).
	ClientMaxWindowBits int `json:"client_max_window_bits,omitempty"`
	ServerMaxWindowBits int `json:"server_max_window_bits,omitempty"`
}

// Options controls decoding. Zero values mean the defaults.
type Options struct {
	// PayloadBytes is how much of each message's payload is kept
	// (unmasked, decompressed): DefaultPayloadBytes when 0, none when
	// None.
	PayloadBytes int
	// MaxCompressedMessage caps the compressed bytes of one message held
	// for decompression. Default 1 MiB.
	MaxCompressedMessage int
	// MaxDecompressed caps one message's decompressed size (a deflate
	// bomb). Default 16 MiB.
	MaxDecompressed int64
	// MaxMessages caps the messages kept, both sides together: the first
	// half and the last half of the cap. DefaultMaxMessages when 0, none
	// when negative (all are counted as omitted).
	MaxMessages int
	// Deflate is the negotiated extension, nil when none.
	Deflate *Deflate
	// Extensions says RSV1 is allowed (an extension was negotiated).
	Extensions bool
}

func (o *Options) defaults() {
	o.PayloadBytes = keepCount(o.PayloadBytes, DefaultPayloadBytes)
	if o.MaxCompressedMessage <= 0 {
		o.MaxCompressedMessage = 1 << 20
	}
	if o.MaxDecompressed <= 0 {
		o.MaxDecompressed = 16 << 20
	}
	o.MaxMessages = keepCount(o.MaxMessages, DefaultMaxMessages)
}

// keepCount reads a "how many to keep" option: 0 means the default, a
// negative number (None) means none.
func keepCount(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// DefaultPayloadBytes is how much of a message's payload is kept by
// default; None as Options.PayloadBytes or MaxMessages keeps none.
const (
	DefaultPayloadBytes = 256
	None                = -1
)

// DefaultMaxMessages is how many messages a conversation keeps by default:
// the first half and the most recent half.
const DefaultMaxMessages = 64

// Message is one text or binary message, possibly fragmented.
type Message struct {
	From   Side           `json:"from"`
	Opcode string         `json:"opcode"`
	Start  evidence.Stamp `json:"start"`
	End    evidence.Stamp `json:"end"`
	Frames int            `json:"frames"`
	// Length is the payload length on the wire; Compressed is set when the
	// message was deflated (RSV1), and Decompressed is then its length
	// after inflating (0 when it could not be).
	Length       int64 `json:"length"`
	Compressed   bool  `json:"compressed,omitempty"`
	Decompressed int64 `json:"decompressed,omitempty"`
	// Payload is the message's first bytes, unmasked and decompressed;
	// PayloadTruncated says there was more.
	Payload          []byte `json:"payload"`
	PayloadTruncated bool   `json:"payload_truncated,omitempty"`
	// Error says why the payload could not be recovered (decompression
	// failed, too large to decompress, a gap).
	Error string `json:"error,omitempty"`
}

// Close is a Close frame (RFC 6455 section 5.5.1).
type Close struct {
	From Side `json:"from"`
	evidence.Stamp
	// Code is the status code, 0 when the frame had no body.
	Code   int    `json:"code"`
	Reason string `json:"reason,omitempty"`
	// Answered is set when the other side sent its own Close after this
	// one (the closing handshake completed).
	Answered bool `json:"answered"`
}

// PingPong is a ping and the pong that answered it.
type PingPong struct {
	From Side           `json:"from"`
	Ping evidence.Stamp `json:"ping"`
	// Pong is nil when no pong came back.
	Pong *evidence.Stamp `json:"pong,omitempty"`
	RTT  time.Duration   `json:"rtt_ns,omitempty"`
}

// Violation is a breach of RFC 6455 (or 7692), flagged and decoded past.
type Violation struct {
	evidence.Stamp
	From Side `json:"from"`
	// Kind is a stable name: unmasked-client-frame, masked-server-frame,
	// reserved-opcode, rsv-without-extension, control-frame-too-long,
	// fragmented-control-frame, bad-close-reason-utf8, bad-close-code,
	// close-payload-1-byte, non-minimal-length, length-top-bit,
	// unexpected-continuation, new-message-inside-fragmented,
	// decompression-error, decompressed-too-large, message-too-large,
	// bad-text-utf8, truncated-frame (the stream ended inside a frame),
	// resynchronised, undecodable.
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"`
}

// Summary is what the decoder found over the whole conversation. Its JSON
// is written by AppendJSON, which a new field must join
// (TestAppendJSONEveryField fails until it does).
type Summary struct {
	// Frames and Bytes count frames and payload bytes per side, by opcode
	// name.
	Frames map[string]int64 `json:"frames"`
	// Messages holds the first and last messages (capped);
	// MessagesOmitted counts those left out.
	Messages        []Message   `json:"messages"`
	MessagesOmitted int64       `json:"messages_omitted,omitempty"`
	Closes          []Close     `json:"closes"`
	Pings           []PingPong  `json:"pings,omitempty"`
	PingsOmitted    int64       `json:"pings_omitted,omitempty"`
	Violations      []Violation `json:"violations,omitempty"`
	// ViolationsOmitted counts violations beyond the cap.
	ViolationsOmitted int64 `json:"violations_omitted,omitempty"`
	// ClosedFirst is the side whose Close came first, "" when none.
	ClosedFirst string `json:"closed_first,omitempty"`
	// Undecodable says, per side, why the rest of its stream could not be
	// decoded ("" when all of it was).
	Undecodable [2]string `json:"undecodable"`
}
