package rules

import (
	"encoding/json"
	"fmt"
	"time"

	"wiremortem/evidence"
	"wiremortem/flows"
)

// Severity ranks incidents; the JSON form is the lower-case name.
type Severity int

// Severities from least to most severe.
const (
	Info Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if s < 0 || int(s) >= len(severityNames) {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity reads a severity name.
func ParseSeverity(name string) (Severity, error) {
	for i, n := range severityNames {
		if n == name {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q (want one of info, low, medium, high, critical)", name)
}

// MarshalJSON writes the severity name.
func (s Severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a severity name.
func (s *Severity) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	v, err := ParseSeverity(name)
	*s = v
	return err
}

// Flow names a conversation by its endpoints: client is the side that sent
// the SYN (or the heuristic originator). IPv6 prints as [::1]:443.
type Flow struct {
	Client string `json:"client"`
	Server string `json:"server"`
	// Conversation is the conversation's ID in the analysis, 0 when the
	// flow comes from logs alone.
	Conversation int `json:"conversation,omitempty"`
	// conv is the conversation a rule listed, whose addresses are written
	// into Client and Server only if the cap keeps the flow (finish).
	conv *flows.Conversation
}

// Cause is one likely explanation, with the evidence that supports it.
type Cause struct {
	Text string `json:"text"`
	// Evidence indexes the incident's Evidence list.
	Evidence []int `json:"evidence,omitempty"`
}

// Incident is one labelled finding. Its JSON form is a stable contract:
// fields are added, never renamed.
type Incident struct {
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	Title    string   `json:"title"`
	// Summary is one sentence with the concrete numbers: who, how long,
	// how many.
	Summary string    `json:"summary"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Flows   []Flow    `json:"flows"`
	// FlowsOmitted counts affected flows left out of Flows by the cap.
	FlowsOmitted int             `json:"flows_omitted,omitempty"`
	Evidence     []evidence.Item `json:"evidence"`
	// EvidenceOmitted counts evidence items left out by the cap.
	EvidenceOmitted int `json:"evidence_omitted,omitempty"`
	// Causes are ranked, most likely first.
	Causes []Cause `json:"causes"`
	// Next lists what to check or change.
	Next []string `json:"next"`
	// Confidence is "high", "medium" or "low": how much the evidence pins
	// the cause down.
	Confidence string `json:"confidence"`

	// texts are the evidence items' descriptions (by index), written
	// into What only for the items the cap keeps (finish): a storm cites
	// a million SYNs and the report keeps forty.
	texts []text
}

// text is an evidence item's description, not yet formatted.
type text struct {
	format string
	args   []any
}
