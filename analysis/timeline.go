package analysis

import (
	"cmp"
	"container/heap"
	"fmt"
	"slices"

	"wiremortem/evidence"
	"wiremortem/flows"
	"wiremortem/rules"
)

// EventKind names a key event on the timeline. The report draws each kind
// with its own mark; kinds it does not know get a generic one, so new
// sources can add kinds without touching the report.
type EventKind string

// Kinds of timeline events.
const (
	// EventSYN is a conversation's first SYN: a connection attempt.
	EventSYN EventKind = "syn"
	// EventFIN and EventRST are each side's first FIN and first RST.
	EventFIN EventKind = "fin"
	EventRST EventKind = "rst"
	// EventZeroWindowStart and EventZeroWindowEnd bound a zero-window
	// episode: a receiver that stopped reading, then read again.
	EventZeroWindowStart EventKind = "zero-window-start"
	EventZeroWindowEnd   EventKind = "zero-window-end"
	// EventUpgrade101 is an HTTP 101 Switching Protocols answer,
	// EventWSClose a WebSocket Close frame (RFC 6455 section 5.5.1) and
	// EventLogError an error line in a log; decoders and log readers add
	// them.
	EventUpgrade101 EventKind = "http-101"
	EventWSClose    EventKind = "ws-close"
	EventLogError   EventKind = "log-error"
	// EventUpgradeFailed is an upgrade request that got no 101 (no
	// answer, at the request; a refusal, at the answer) or a 101 with a
	// wrong Sec-WebSocket-Accept; EventWSFrameWithoutUpgrade a WebSocket
	// frame a client sent although no 101 came (seed 000's Close frame);
	// EventWSViolation a WebSocket protocol violation.
	EventUpgradeFailed         EventKind = "http-upgrade-failed"
	EventWSFrameWithoutUpgrade EventKind = "ws-frame-without-upgrade"
	EventWSViolation           EventKind = "ws-violation"
	// EventLogRequest is an access-log line worth seeing (a 101, a
	// 4xx), EventStrace a traced call on a joined socket (accept, connect,
	// first read and write, read = 0, close) and EventSnapshot one ss or
	// netstat snapshot, with its sockets counted by state.
	EventLogRequest EventKind = "log-request"
	EventStrace     EventKind = "strace"
	EventSnapshot   EventKind = "snapshot"
)

// TimelineEvent is one key event on the report's timeline: when, where it
// is proved (packet or log line), what happened, and the lane it is drawn
// in.
type TimelineEvent struct {
	evidence.Item
	Kind EventKind `json:"kind"`
	// Lane groups events for display: the server endpoint for packets,
	// the file for log lines, OtherLane for endpoints past the lane cap.
	Lane string `json:"lane"`
	// Conversation is the conversation's ID, 0 for log lines not joined
	// to one.
	Conversation int `json:"conversation,omitempty"`
}

// OtherLane collects the events of endpoints beyond the lane cap.
const OtherLane = "other endpoints"

// Timeline caps: enough for a readable chart, small enough for the page.
const (
	DefaultMaxTimelineEvents = 2000
	maxTimelineLanes         = 12
)

// Priorities of timeline events when the cap forces a choice: what an
// incident cites first, then what breaks a conversation, then what merely
// starts or ends one.
const (
	priorityRoutine  = 1 // SYN, FIN
	priorityNotable  = 3 // an unanswered SYN, a 101, a close frame, a protocol violation
	prioritySymptom  = 5 // RST, zero window, an error line, a failed upgrade
	priorityIncident = 10
)

var kindPriority = map[EventKind]int{
	EventSYN:                   priorityRoutine,
	EventFIN:                   priorityRoutine,
	EventUpgrade101:            priorityNotable,
	EventWSClose:               priorityNotable,
	EventWSViolation:           priorityNotable,
	EventUpgradeFailed:         prioritySymptom,
	EventWSFrameWithoutUpgrade: prioritySymptom,
	EventRST:                   prioritySymptom,
	EventZeroWindowStart:       prioritySymptom,
	EventZeroWindowEnd:         prioritySymptom,
	EventLogError:              prioritySymptom,
	EventLogRequest:            priorityNotable,
	EventStrace:                priorityRoutine,
	EventSnapshot:              priorityRoutine,
}

// BuildTimeline picks the key events of every conversation, adds the
// events other sources found (log lines, decoded messages: their priority
// comes from their kind), keeps the limit most telling ones (events of
// conversations an incident cites first, then resets, zero windows and
// errors, then the rest; earlier first among equals) and returns them in
// time order with the number left out.
func BuildTimeline(convs []*flows.Conversation, other []TimelineEvent, incidents []rules.Incident, limit int) ([]TimelineEvent, int) {
	if limit <= 0 {
		limit = DefaultMaxTimelineEvents
	}
	cited := map[int]bool{}
	for _, inc := range incidents {
		for _, f := range inc.Flows {
			if f.Conversation != 0 {
				cited[f.Conversation] = true
			}
		}
	}
	k := &topEvents{limit: limit}
	for _, c := range convs {
		boost := 0
		if cited[c.ID] {
			boost = priorityIncident
		}
		conversationEvents(c, func(ev TimelineEvent, priority int) {
			k.offer(ranked{ev, priority + boost})
		})
	}
	for _, ev := range other {
		priority := cmp.Or(kindPriority[ev.Kind], priorityRoutine)
		if cited[ev.Conversation] {
			priority += priorityIncident
		}
		k.offer(ranked{ev, priority})
	}
	events := make([]TimelineEvent, len(k.kept))
	for i, r := range k.kept {
		events[i] = r.TimelineEvent
	}
	slices.SortFunc(events, compareEvents)
	capLanes(events)
	return events, k.dropped
}

// conversationEvents calls add for each key event of c.
func conversationEvents(c *flows.Conversation, add func(TimelineEvent, int)) {
	lane := c.Server.String()
	event := func(kind EventKind, at evidence.Stamp, what string) TimelineEvent {
		return TimelineEvent{
			Item: evidence.Item{Ref: at.Ref, Time: at.Time, What: what},
			Kind: kind, Lane: lane, Conversation: c.ID,
		}
	}
	if h := c.Handshake; len(h.SYNs) > 0 {
		what, priority := fmt.Sprintf("SYN %s → %s", c.Client, c.Server), kindPriority[EventSYN]
		switch {
		case h.RefusedBy != nil:
			what += ", refused by RST"
		case h.SYNACKCount == 0:
			what += fmt.Sprintf(", never answered (%d SYNs sent)", h.SYNCount)
			priority = priorityNotable
		}
		add(event(EventSYN, h.SYNs[0], what), priority)
	}
	for _, z := range c.ZeroWindows {
		who := c.Endpoint(z.Receiver)
		add(event(EventZeroWindowStart, z.Start, fmt.Sprintf("%s advertises a zero window (%d bytes waiting)", who, z.BytesWaiting)), kindPriority[EventZeroWindowStart])
		if z.End != nil {
			add(event(EventZeroWindowEnd, *z.End, fmt.Sprintf("%s reopens its window after %s", who, FormatDuration(z.Duration))), kindPriority[EventZeroWindowEnd])
		}
	}
	for side, m := range c.Closing.RSTs {
		if m != nil {
			add(event(EventRST, m.Stamp, fmt.Sprintf("RST from %s (%d bytes unacknowledged)", c.Endpoint(flows.Side(side)), m.Unacked)), kindPriority[EventRST])
		}
	}
	for side, m := range c.Closing.FINs {
		if m != nil {
			add(event(EventFIN, m.Stamp, fmt.Sprintf("FIN from %s", c.Endpoint(flows.Side(side)))), kindPriority[EventFIN])
		}
	}
}

func compareEvents(a, b TimelineEvent) int {
	return cmp.Or(
		a.Time.Compare(b.Time),
		cmp.Compare(a.Source, b.Source),
		cmp.Compare(a.Packet, b.Packet),
		cmp.Compare(a.Line, b.Line),
		cmp.Compare(a.Kind, b.Kind),
		cmp.Compare(a.Conversation, b.Conversation),
	)
}

// capLanes keeps the maxTimelineLanes-1 busiest lanes and merges the rest
// into OtherLane, so a capture with thousands of servers still draws as a
// readable chart.
func capLanes(events []TimelineEvent) {
	count := map[string]int{}
	for _, ev := range events {
		count[ev.Lane]++
	}
	if len(count) <= maxTimelineLanes {
		return
	}
	lanes := make([]string, 0, len(count))
	for l := range count {
		lanes = append(lanes, l)
	}
	slices.SortFunc(lanes, func(a, b string) int { return cmp.Or(cmp.Compare(count[b], count[a]), cmp.Compare(a, b)) })
	keep := map[string]bool{}
	for _, l := range lanes[:maxTimelineLanes-1] {
		keep[l] = true
	}
	for i := range events {
		if !keep[events[i].Lane] {
			events[i].Lane = OtherLane
		}
	}
}

// ranked is a candidate event with its priority.
type ranked struct {
	TimelineEvent
	priority int
}

// less orders candidates from least to most worth keeping: lower priority,
// then later in time.
func (a ranked) less(b ranked) bool {
	if a.priority != b.priority {
		return a.priority < b.priority
	}
	return compareEvents(a.TimelineEvent, b.TimelineEvent) > 0
}

// topEvents keeps the limit best candidates in a min-heap, so memory stays
// bounded however many conversations there are.
type topEvents struct {
	limit   int
	kept    []ranked
	dropped int
}

func (k *topEvents) offer(r ranked) {
	if len(k.kept) < k.limit {
		heap.Push(k, r)
		return
	}
	k.dropped++
	if k.kept[0].less(r) {
		k.kept[0] = r
		heap.Fix(k, 0)
	}
}

func (k *topEvents) Len() int           { return len(k.kept) }
func (k *topEvents) Less(i, j int) bool { return k.kept[i].less(k.kept[j]) }
func (k *topEvents) Swap(i, j int)      { k.kept[i], k.kept[j] = k.kept[j], k.kept[i] }
func (k *topEvents) Push(x any)         { k.kept = append(k.kept, x.(ranked)) }
func (k *topEvents) Pop() any {
	r := k.kept[len(k.kept)-1]
	k.kept = k.kept[:len(k.kept)-1]
	return r
}
