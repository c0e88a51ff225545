// Package analysis runs wiremortem's whole pipeline over a set of input
// files (captures and the logs beside them) and produces the Document: the
// JSON contract that the HTML report and batch jobs consume.
package analysis

import (
	"time"

	"wiremortem/correlate"
	"wiremortem/decoders/http"
	"wiremortem/decoders/logline"
	"wiremortem/flows"
	"wiremortem/flows/capture"
	"wiremortem/rules"
)

// Document is the full result of one analysis. Same inputs, byte-identical
// JSON: nothing in it depends on the wall clock, map order or scheduling.
// Fields are added, never renamed (docs/json.md).
type Document struct {
	Tool      Tool             `json:"tool"`
	Inputs    []InputFile      `json:"inputs"`
	Summary   Summary          `json:"summary"`
	Incidents []rules.Incident `json:"incidents"`
	// IncidentsOmitted counts incidents left out by the cap (the least
	// severe); Summary counts them all.
	IncidentsOmitted int `json:"incidents_omitted,omitempty"`
	// Conversations are the ones kept in memory for the HTML report: the
	// first ones and those incidents cite, up to a cap. The JSON document
	// lists every conversation: Result.WriteJSON streams them from disk.
	Conversations []Conversation `json:"-"`
	// Timeline holds the key events of every source in time order, capped
	// to the most telling ones; TimelineOmitted counts the rest.
	Timeline        []TimelineEvent `json:"timeline"`
	TimelineOmitted int             `json:"timeline_omitted,omitempty"`
	// Rates counts what happened per time step over the whole analysis.
	Rates    Rates     `json:"rates"`
	Warnings []Warning `json:"warnings"`
}

// Tool names the program that wrote the document.
type Tool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// CommandLine is the command that wrote the document, when known.
	CommandLine []string `json:"command_line,omitempty"`
}

// Summary counts what was found.
type Summary struct {
	Start         time.Time      `json:"start"`
	End           time.Time      `json:"end"`
	Conversations int            `json:"conversations"`
	Incidents     map[string]int `json:"incidents_by_severity"`
	// Packets accounts for every packet read (no silent loss).
	Packets flows.Stats `json:"packets"`
	// Partial is set when the analysis was interrupted and covers only
	// what was read until then; PartialReason says why (Ctrl-C, or the
	// memory limit).
	Partial       bool   `json:"partial,omitempty"`
	PartialReason string `json:"partial_reason,omitempty"`
}

// InputFile describes one input and what was made of it.
type InputFile struct {
	Path   string `json:"path"`
	Kind   Kind   `json:"kind"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Capture is set for capture files.
	Capture *capture.Info `json:"capture,omitempty"`
	// Records is the number of packets (captures) or lines (logs) read.
	Records int64 `json:"records"`
	// Unparsed counts log lines that were kept but not understood;
	// UnparsedExamples shows the first few.
	Unparsed         int64              `json:"unparsed,omitempty"`
	UnparsedExamples []logline.Unparsed `json:"unparsed_examples,omitempty"`
	// Dropped counts records read but not kept (the per-file cap).
	Dropped int64 `json:"dropped,omitempty"`
	// Format is the nginx log_format an access log was read with.
	Format string `json:"format,omitempty"`
	// Clock says how the file's times were put on the capture's clock.
	Clock *ClockAssumption `json:"clock,omitempty"`
	First time.Time        `json:"first,omitempty"`
	Last  time.Time        `json:"last,omitempty"`
	// Damage says where reading stopped when the file is truncated or
	// corrupt; the file was read up to there.
	Damage string `json:"damage,omitempty"`
}

// ClockAssumption is everything assumed or estimated about a log's clock.
type ClockAssumption struct {
	// Zone is the zone of times the log writes without one, and
	// ZoneSource where it came from ("given", "assumed (no --tz given)",
	// "in the log").
	Zone       string `json:"zone"`
	ZoneSource string `json:"zone_source"`
	// Date is the day given to time-of-day times, and DateSource where it
	// came from.
	Date       string `json:"date,omitempty"`
	DateSource string `json:"date_source,omitempty"`
	// GivenOffset is a skew given with --offset.
	GivenOffset time.Duration `json:"given_offset_ns,omitempty"`
	// Estimated is the skew estimated by pairing log events with packets;
	// EstimateNote says why there is none.
	Estimated    *correlate.SkewEstimate `json:"estimated,omitempty"`
	EstimateNote string                  `json:"estimate_note,omitempty"`
	// Applied is the offset added to every time of the file.
	Applied time.Duration `json:"applied_offset_ns"`
}

// Kind is what an input file holds.
type Kind string

// Input kinds, detected by content unless forced.
const (
	KindCapture     Kind = "capture"
	KindNginxAccess Kind = "nginx-access"
	KindNginxError  Kind = "nginx-error"
	KindStrace      Kind = "strace"
	KindSockstat    Kind = "ss"
	// KindNginxConf is an nginx configuration: its log_format directives
	// tell how the access logs beside it read.
	KindNginxConf Kind = "nginx-conf"
)

// Conversation is a TCP conversation with what the decoders and the log
// joins added to it.
type Conversation struct {
	*flows.Conversation
	// HTTP is what the HTTP and WebSocket decoders found, when the
	// conversation carried HTTP.
	HTTP *http.Conversation `json:"http,omitempty"`
}

// Warning is a problem with an input that did not stop the analysis.
type Warning struct {
	Source string `json:"source"`
	// Record or Line locates the problem when known; Offset is a byte
	// offset in the file (decompressed, for compressed captures).
	Record  int64  `json:"record,omitempty"`
	Line    int64  `json:"line,omitempty"`
	Offset  int64  `json:"offset,omitempty"`
	Message string `json:"message"`
}
