package rules

import (
	"time"

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

	// conversationFields caches what user rules see, built once per
	// evaluation (Evaluate works on a copy of the Input).
	conversationFields []ConversationFields
}

// fields returns the conversations as user rules see them.
func (in *Input) fields() []ConversationFields {
	if in.conversationFields == nil {
		in.conversationFields = make([]ConversationFields, len(in.Conversations))
		for i, c := range in.Conversations {
			in.conversationFields[i] = conversationFields(c)
		}
	}
	return in.conversationFields
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
