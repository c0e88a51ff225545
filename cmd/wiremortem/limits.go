package main

import (
	"strconv"

	"github.com/spf13/pflag"

	"wiremortem/analysis"
	"wiremortem/decoders/websocket"
	"wiremortem/rules"
)

// The resource caps, one flag each. Every cap has a default that fits a
// laptop, and the output counts what hitting it cost (evicted
// conversations, reassembly gaps, too-long lines, omitted incidents...).

// byteSize is a flag holding a byte count written 1500, 64KiB or 1MB.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }
func (b *byteSize) Type() string   { return "bytes" }
func (b *byteSize) Set(s string) error {
	n, err := rules.ParseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

type limitFlags struct {
	conversations, reportConversations, timelineEvents int
	incidents, evidence                                int
	wsMessages                                         int
	wsPayload                                          byteSize
	bufferPerConversation, bufferTotal                 byteSize
	httpHeader, wsMessage, decompressed, logLine       byteSize
}

// reassemblyPage is gopacket's reassembly page size: the tracker's buffer
// caps are counted in pages.
const reassemblyPage = 1900

func addLimitFlags(fs *pflag.FlagSet) *limitFlags {
	lf := &limitFlags{bufferPerConversation: 64 * reassemblyPage, bufferTotal: 16384 * reassemblyPage,
		httpHeader: 64 << 10, wsMessage: 1 << 20, decompressed: 16 << 20, logLine: 64 << 10,
		wsPayload: websocket.DefaultPayloadBytes}
	fs.IntVar(&lf.conversations, "max-conversations", 1_000_000, "live conversations held at once; past it the least recently active is finished early (counted as evicted)")
	fs.Var(&lf.bufferPerConversation, "max-buffer-per-conversation", "out-of-order bytes held per conversation for reassembly; past it the hole is skipped (counted as a reassembly gap)")
	fs.Var(&lf.bufferTotal, "max-buffer", "out-of-order bytes held for reassembly in total")
	fs.Var(&lf.httpHeader, "max-http-header", "bytes of one HTTP message's start line and headers (past it: flagged header-too-large, decoding of that side stops)")
	fs.Var(&lf.wsMessage, "max-ws-message", "compressed bytes of one WebSocket message held to inflate it (past it: flagged message-too-large)")
	fs.Var(&lf.decompressed, "max-decompressed", "bytes one WebSocket message may inflate to: a deflate bomb stops there (flagged decompressed-too-large)")
	fs.IntVar(&lf.wsMessages, "ws-messages", websocket.DefaultMaxMessages, "WebSocket messages kept per conversation, the first half and the most recent half (the rest are counted as messages_omitted; 0 keeps none)")
	fs.Var(&lf.wsPayload, "ws-payload", "bytes of each kept WebSocket message's payload shown, unmasked and inflated (0 keeps none: payloads can hold secrets)")
	fs.Var(&lf.logLine, "max-log-line", "bytes of one log line; a longer line is counted as unparsed (too long) and skipped")
	fs.IntVar(&lf.reportConversations, "max-report-conversations", 2000, "conversations drawn in the HTML report (the JSON lists them all)")
	fs.IntVar(&lf.timelineEvents, "max-timeline-events", analysis.DefaultMaxTimelineEvents, "events on the report's timeline (the rest are counted)")
	fs.IntVar(&lf.incidents, "max-incidents", rules.DefaultLimits.MaxIncidents, "incidents reported, the most severe first (the rest are counted); same as --set limits.max_incidents=N")
	fs.IntVar(&lf.evidence, "max-evidence", rules.DefaultLimits.MaxEvidence, "evidence items per incident, those a cause cites first (the rest are counted)")
	return lf
}

// apply sets the caps in the analysis options; rule limits go to the rule
// configuration, where --set and --rule-config may also have set them
// (a flag given explicitly wins).
func (lf *limitFlags) apply(fs *pflag.FlagSet, opts *analysis.Options) {
	opts.Tracker.MaxConversations = lf.conversations
	opts.Tracker.MaxBufferedPagesPerConversation = pages(int64(lf.bufferPerConversation))
	opts.Tracker.MaxBufferedPagesTotal = pages(int64(lf.bufferTotal))
	opts.HTTP.MaxHeaderBytes = int(lf.httpHeader)
	opts.HTTP.WebSocket.MaxCompressedMessage = int(lf.wsMessage)
	opts.HTTP.WebSocket.MaxDecompressed = int64(lf.decompressed)
	opts.HTTP.WebSocket.MaxMessages = noneAtZero(lf.wsMessages)
	opts.HTTP.WebSocket.PayloadBytes = noneAtZero(int(lf.wsPayload))
	opts.MaxLogLineBytes = int(lf.logLine)
	opts.ReportConversations = lf.reportConversations
	opts.MaxTimelineEvents = lf.timelineEvents
	if opts.Rules != nil {
		if fs.Changed("max-incidents") {
			opts.Rules.Limits.MaxIncidents = lf.incidents
		}
		if fs.Changed("max-evidence") {
			opts.Rules.Limits.MaxEvidence = lf.evidence
		}
	}
}

// noneAtZero turns a flag's "0 keeps none" into the decoder options'
// value for none (0 there is the default).
func noneAtZero(n int) int {
	if n <= 0 {
		return websocket.None
	}
	return n
}

// pages turns a byte cap into reassembly pages, at least one.
func pages(n int64) int {
	return int(max(1, (n+reassemblyPage-1)/reassemblyPage))
}
