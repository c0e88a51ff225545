package rules

import (
	"sync"
	"time"

	"wiremortem/correlate"
	"wiremortem/decoders/http"
	"wiremortem/flows"
)

// Input is everything the rules read. Each kind of record is its own field:
// conversations now; decoded HTTP/WebSocket records, log events and their
// joins to conversations come as new fields, so adding a kind never touches
// a rule that does not read it.
type Input struct {
	// Conversations are the TCP conversations of every capture, in ID
	// order.
	Conversations []*flows.Conversation
	// CaptureStart and CaptureEnd bound the time the captures cover. A
	// socket still open when the capture stopped was open at least until
	// CaptureEnd. Zero values are taken from the conversations.
	CaptureStart, CaptureEnd time.Time
	// Captures are the capture files' time ranges. When several captures
	// cover different times (two hosts, two incidents), a conversation is
	// judged against the end of the capture that held it, and of captures
	// that continued it (rotated parts), not against the latest of all.
	// Empty means one capture ending at CaptureEnd.
	Captures []CaptureSpan
	// HTTP is the decoded HTTP and WebSocket of conversations, by ID.
	HTTP map[int]*http.Conversation
	// Logs are the log records on the capture's clock, joined to
	// conversations; nil when no log was given.
	Logs *correlate.Joined

	// fieldsCache holds what user rules see, built once per evaluation
	// (Evaluate works on a copy of the Input and sets it) by the first
	// user rule that asks, while others run.
	fieldsCache *fieldsCache
}

type fieldsCache struct {
	once   sync.Once
	fields []ConversationFields
}

// fields returns the conversations as user rules see them.
func (in *Input) fields() []ConversationFields {
	if in.fieldsCache == nil { // an Input used outside Evaluate
		in.fieldsCache = &fieldsCache{}
	}
	c := in.fieldsCache
	c.once.Do(func() {
		c.fields = make([]ConversationFields, len(in.Conversations))
		for i, conv := range in.Conversations {
			c.fields[i] = conversationFields(conv)
		}
	})
	return c.fields
}

// logsFor returns the log records joined to a conversation (never nil).
func (in *Input) logsFor(id int) *correlate.ByConversation {
	if in.Logs != nil {
		if b := in.Logs.ByConversation[id]; b != nil {
			return b
		}
	}
	return &correlate.ByConversation{}
}

// CaptureSpan is one capture file's first and last packet times.
type CaptureSpan struct {
	Source      string
	First, Last time.Time
}

// rotationGap is how far apart a capture's end and the next file's start
// may be for the next file to continue it (tcpdump -G/-C rotation).
const rotationGap = time.Second

// endFor is the end of the capture that last saw c: until then a socket
// of c that had not closed was still open. Files that start within
// rotationGap of that end, after that file began, continue it.
func (in *Input) endFor(c *flows.Conversation) time.Time {
	var own *CaptureSpan
	for i := range in.Captures {
		if in.Captures[i].Source == c.LastPacket.Source {
			own = &in.Captures[i]
			break
		}
	}
	if own == nil {
		return in.CaptureEnd
	}
	end := own.Last
	for extended := true; extended; {
		extended = false
		for _, s := range in.Captures {
			if s.Last.After(end) && !s.First.Before(own.First) && !s.First.After(end.Add(rotationGap)) {
				end, extended = s.Last, true
			}
		}
	}
	return end
}

// captureEnd is CaptureEnd, or the last packet of any conversation.
func (in *Input) captureEnd() time.Time {
	if !in.CaptureEnd.IsZero() {
		return in.CaptureEnd
	}
	var end time.Time
	for _, c := range in.Conversations {
		if c.End.After(end) {
			end = c.End
		}
	}
	return end
}
