package analysis

import (
	"wiremortem/decoders/http"
	"wiremortem/evidence"
	"wiremortem/flows"
)

// httpSink feeds a conversation's reassembled bytes to the HTTP decoder
// (which hands upgraded conversations to the WebSocket decoder).
type httpSink struct{ d *http.Decoder }

func newHTTPSink(c *flows.Conversation, opts http.Options) flows.Sink {
	// Without the client's SYN the first bytes may be mid-message.
	opts.MidStream = c.Originator != "syn"
	return &httpSink{d: http.NewDecoder(opts)}
}

func (s *httpSink) Data(from flows.Side, b []byte, loc evidence.Locator) {
	s.d.Data(http.Side(from), b, loc)
}

func (s *httpSink) Gap(from flows.Side, missing int, at evidence.Stamp) {
	s.d.Gap(http.Side(from), missing, at)
}

func (s *httpSink) End(from flows.Side, at evidence.Stamp) { s.d.End(http.Side(from), at) }

func (s *httpSink) Done() bool { return s.d.Done() }

// result returns the decoded conversation when it was HTTP.
func (s *httpSink) result() *http.Conversation {
	r := s.d.Result()
	if r.Protocol != "http" {
		return nil
	}
	return r
}
