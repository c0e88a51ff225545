package analysis

import (
	"wiremortem/decoders/http"
	"wiremortem/decoders/websocket"
	"wiremortem/evidence"
	"wiremortem/flows"
)

// httpSink feeds a conversation's reassembled bytes to the HTTP decoder
// (which hands upgraded conversations to the WebSocket decoder). The
// decoder is made at the first bytes or gap: most conversations of a SYN
// flood or a port scan carry none, and a decoder is 700 bytes.
type httpSink struct {
	opts *http.Options
	// midStream: without the client's SYN the first bytes may be
	// mid-message.
	midStream bool
	d         *http.Decoder
	// ws is d's WebSocket decoder once the conversation switched: its
	// bytes go straight there, not through d (a cache miss a packet
	// with thousands of conversations live).
	ws *websocket.Decoder
	// ended marks the sides whose End came. Once both have, nothing more
	// reaches the sink: closed holds the result and the decoders go (see
	// End).
	ended  [2]bool
	closed *http.Conversation
}

func newHTTPSink(c *flows.Conversation, opts *http.Options) flows.Sink {
	return &httpSink{opts: opts, midStream: c.Originator != "syn"}
}

// decoder returns the conversation's decoder, made on first use.
func (s *httpSink) decoder() *http.Decoder {
	if s.d == nil {
		opts := *s.opts
		opts.MidStream = s.midStream
		s.d = http.NewDecoder(opts)
	}
	return s.d
}

func (s *httpSink) Data(from flows.Side, b []byte, loc evidence.Locator) {
	if s.ws != nil {
		s.ws.Data(from, b, loc)
		return
	}
	d := s.decoder()
	d.Data(from, b, loc)
	s.ws = d.WebSocket()
}

func (s *httpSink) Gap(from flows.Side, missing int, at evidence.Stamp) {
	s.decoder().Gap(from, missing, at)
}

// End before any byte or gap needs no decoder: on a fresh one it only
// notes a time, which the first bytes overwrite, and a conversation
// without bytes decodes to nothing.
//
// At the second End the result is final, so it is made then and the
// decoders are let go: a closed conversation stays with the tracker for
// flows.Options.CloseLinger of capture time (its late packets still
// count), and with thousands of conversations closing a second, the
// decoders they would hold (a kilobyte or more each, with their buffers)
// were a good part of the memory.
func (s *httpSink) End(from flows.Side, at evidence.Stamp) {
	if s.d != nil {
		s.d.End(from, at)
	}
	s.ended[from] = true
	if s.bothEnded() && s.d != nil {
		s.closed = s.decoded()
		s.d, s.ws = nil, nil
	}
}

func (s *httpSink) bothEnded() bool { return s.ended[flows.Client] && s.ended[flows.Server] }

// Done is asked after every chunk; a conversation that switched to
// WebSocket is never done (the decoder gives up only on bytes that are
// not HTTP at all), and asking it would load the HTTP decoder again.
func (s *httpSink) Done() bool { return s.ws == nil && s.d != nil && s.d.Done() }

// result returns the decoded conversation when it was HTTP (never without
// a byte).
func (s *httpSink) result() *http.Conversation {
	if s.bothEnded() {
		return s.closed
	}
	return s.decoded()
}

func (s *httpSink) decoded() *http.Conversation {
	if s.d == nil {
		return nil
	}
	r := s.d.Result()
	if r.Protocol != "http" {
		return nil
	}
	return r
}
