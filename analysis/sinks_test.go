package analysis

import (
	"path/filepath"
	"reflect"
	"testing"

	"wiremortem/decoders/http"
	"wiremortem/evidence"
	"wiremortem/flows"
	"wiremortem/flows/capture"
	"wiremortem/internal/pcaptest"
)

// teeSink feeds an httpSink and, beside it, a decoder that is never let
// go: what the sink made at the second End must be what that decoder
// gives when the conversation is finished.
type teeSink struct {
	sink *httpSink
	kept *http.Decoder
}

func (s *teeSink) Data(from flows.Side, b []byte, loc evidence.Locator) {
	s.sink.Data(from, b, loc)
	s.kept.Data(from, b, loc)
}

func (s *teeSink) Gap(from flows.Side, missing int, at evidence.Stamp) {
	s.sink.Gap(from, missing, at)
	s.kept.Gap(from, missing, at)
}

func (s *teeSink) End(from flows.Side, at evidence.Stamp) {
	s.sink.End(from, at)
	s.kept.End(from, at)
}

// Done as the sink says; the kept decoder sees what the sink saw.
func (s *teeSink) Done() bool { return s.sink.Done() }

// TestSinkLetsGoAtClose: a conversation whose two sides ended keeps its
// decoded result, not its decoders, while it lingers; and the result is
// the one the decoders would give at the finish. Every lab capture.
func TestSinkLetsGoAtClose(t *testing.T) {
	opts := http.Options{}
	closed, decoded := 0, 0
	for _, set := range labCaptureSets(t) {
		name := filepath.Base(filepath.Dir(set[0]))
		tr := flows.NewTracker(flows.Options{
			NewSink: func(c *flows.Conversation) flows.Sink {
				sink := newHTTPSink(c, &opts).(*httpSink)
				kept := opts
				kept.MidStream = sink.midStream
				return &teeSink{sink: sink, kept: http.NewDecoder(kept)}
			},
			OnDone: func(c *flows.Conversation, s flows.Sink) {
				tee := s.(*teeSink)
				got := tee.sink.result()
				want := tee.kept.Result()
				if want.Protocol != "http" {
					want = nil
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s conversation %d: the sink's result differs from the decoder's at the finish:\n%+v\n%+v", name, c.ID, got, want)
				}
				if !tee.sink.bothEnded() {
					return
				}
				closed++
				if tee.sink.d != nil || tee.sink.ws != nil {
					t.Errorf("%s conversation %d: both sides ended, the sink still holds its decoders", name, c.ID)
				}
				if got != nil {
					decoded++
				}
			},
		})
		if err := tr.Run(pcaptest.Merge(t, func(e *capture.Error) { t.Logf("%s: %v", name, e) }, set...)); err != nil {
			t.Fatal(err)
		}
	}
	// The lab's HTTP, WebSocket and nginx conversations mostly close with
	// FINs or a reset in the capture.
	if closed < 50 || decoded < 20 {
		t.Errorf("%d conversations ended both ways, %d of them HTTP: too few to test", closed, decoded)
	}
	t.Logf("%d conversations ended both ways, %d of them HTTP", closed, decoded)
}
