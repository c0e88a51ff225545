// Package http decodes HTTP/1.x over one TCP conversation's two in-order
// byte streams, pushed in as they are reassembled: requests and responses
// paired in order (keep-alive and pipelining), bodies skipped by
// Content-Length or chunked encoding without holding them, and the upgrade
// handshake with its verdict: ok, no-response, rejected, bad-accept, or
// not-upgraded-but-frames (the client sent WebSocket frames although no 101
// came, the Close frame 88 02 03 e8 of seed 000). After a 101 to
// "websocket" both directions go to the websocket decoder.
package http

import (
	"time"

	"wiremortem/decoders/websocket"
	"wiremortem/evidence"
)

// Side is who sent bytes: the client (the side that sent the SYN) or the
// server.
type Side = websocket.Side

// The two sides.
const (
	Client = websocket.Client
	Server = websocket.Server
)

// Options controls decoding; zero values mean the defaults.
type Options struct {
	// MaxHeaderBytes caps a message's start line and headers. Default
	// 64 KiB.
	MaxHeaderBytes int
	// MaxExchanges caps the exchanges kept: the first half and the last
	// half. Default 64.
	MaxExchanges int
	// MidStream says the conversation's start was not captured: the first
	// bytes may be the middle of a message, so decoding starts at the
	// first line that looks like a request or a status line.
	MidStream bool
	// WebSocket controls the decoding after an upgrade; its Deflate and
	// Extensions are set from the handshake.
	WebSocket websocket.Options
}

func (o *Options) defaults() {
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	if o.MaxExchanges <= 0 {
		o.MaxExchanges = 64
	}
}

// Message is one request or response.
type Message struct {
	// Start and End are the message's first and last bytes (headers and
	// body).
	Start evidence.Stamp `json:"start"`
	End   evidence.Stamp `json:"end"`
	// Request line, or status line.
	Method  string `json:"method,omitempty"`
	URI     string `json:"uri,omitempty"`
	Version string `json:"version"`
	Status  int    `json:"status,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Headers holds the headers a postmortem needs (Host, Upgrade,
	// Connection, Sec-WebSocket-*, Content-Length, Transfer-Encoding,
	// User-Agent, X-Forwarded-For, Server, Location), values capped.
	Headers       Headers `json:"headers,omitempty"`
	HeaderBytes   int     `json:"header_bytes"`
	BodyBytes     int64   `json:"body_bytes"`
	ContentLength int64   `json:"content_length"`
	Chunked       bool    `json:"chunked,omitempty"`
	// Complete is false when the stream ended inside the message.
	Complete bool `json:"complete"`
	// Flags name oddities: content-length-and-chunked (a request smuggling
	// signal), conflicting-content-length, duplicate-content-length,
	// bad-chunk-size, bare-lf, obs-fold, header-too-large.
	Flags []string `json:"flags,omitempty"`
}

// Exchange is a request and the response that answered it.
type Exchange struct {
	Request  *Message `json:"request"`
	Response *Message `json:"response,omitempty"`
	// Interim lists 1xx statuses sent before the final response (100
	// Continue, 103 Early Hints).
	Interim []int `json:"interim,omitempty"`
}

// Verdicts of an upgrade handshake.
const (
	VerdictOK                   = "ok"
	VerdictNoResponse           = "no-response"
	VerdictRejected             = "rejected"
	VerdictBadAccept            = "bad-accept"
	VerdictNotUpgradedButFrames = "not-upgraded-but-frames"
)

// UpgradeHandshake is an HTTP upgrade request (RFC 9110 section 7.8; for
// WebSocket RFC 6455 section 4) and what came of it.
type UpgradeHandshake struct {
	Request *Message `json:"request"`
	// Response is nil when none came.
	Response *Message `json:"response,omitempty"`
	// Protocol is the Upgrade header, lower-cased: "websocket", "h2c",
	// "tcp"...
	Protocol string `json:"protocol"`
	Verdict  string `json:"verdict"`
	// Waited runs from the request's last byte to the response's first
	// byte or, without a response, to the moment the client gave up (its
	// first frame without upgrade, or the end of the conversation).
	Waited time.Duration `json:"waited_ns"`
	// ExpectedAccept is the Sec-WebSocket-Accept the key calls for (RFC
	// 6455 section 4.2.2) and Accept what the server sent.
	ExpectedAccept string `json:"expected_accept,omitempty"`
	Accept         string `json:"accept,omitempty"`
	// FramesWithoutUpgrade are WebSocket frames the client sent although
	// no 101 had come.
	FramesWithoutUpgrade []FrameNote `json:"frames_without_upgrade,omitempty"`
}

// FrameNote is a WebSocket frame seen where none should be.
type FrameNote struct {
	evidence.Stamp
	Opcode string `json:"opcode"`
	Masked bool   `json:"masked"`
	// CloseCode is a Close frame's status code (1000 in seed 000).
	CloseCode int `json:"close_code,omitempty"`
	// Hex is the frame's first bytes: "88 02 03 e8".
	Hex string `json:"hex"`
}

// Conversation is what the decoder found over one conversation. Its JSON
// is written by AppendJSON, which a new field must join
// (TestAppendJSONEveryField fails until it does).
type Conversation struct {
	// Protocol is "http" once HTTP was recognised, "not-http" when the
	// first bytes were something else, "" when no byte came.
	Protocol string `json:"protocol"`
	// Partial is set when the conversation's start was missing or a gap
	// broke a message; PartialReason says which.
	Partial       bool   `json:"partial,omitempty"`
	PartialReason string `json:"partial_reason,omitempty"`
	// Exchanges are paired requests and responses, capped
	// (ExchangesOmitted counts the rest).
	Exchanges        []Exchange `json:"exchanges"`
	ExchangesOmitted int        `json:"exchanges_omitted,omitempty"`
	// Upgrades are the upgrade handshakes (usually one).
	Upgrades []UpgradeHandshake `json:"upgrades,omitempty"`
	// WebSocket is what was decoded after a 101 to websocket.
	WebSocket *websocket.Summary `json:"websocket,omitempty"`
	// Undecodable says, per side, why decoding stopped early ("" if it
	// did not).
	Undecodable [2]string `json:"undecodable"`
}
