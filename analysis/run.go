package analysis

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"wiremortem/correlate"
	"wiremortem/decoders/http"
	"wiremortem/flows"
	"wiremortem/flows/capture"
	"wiremortem/rules"
)

// Version is the tool version written into documents; set by the command.
var Version = "dev"

// Input is one file to analyse. Kind is detected from the content when
// empty.
type Input struct {
	Path string
	Kind Kind
}

// Options controls an analysis. The zero value analyses with defaults.
type Options struct {
	// Tracker holds the conversation tracker's limits; NewSink and OnDone
	// are set by the analysis.
	Tracker flows.Options
	// ReportConversations caps the conversations kept in memory for the
	// HTML report (the JSON document lists them all): those incidents cite
	// first, then those that did not end cleanly. Default 2,000.
	ReportConversations int
	// MaxTimelineEvents caps the document's timeline. Default
	// DefaultMaxTimelineEvents.
	MaxTimelineEvents int
	// CommandLine is recorded in the document (Tool.CommandLine).
	CommandLine []string
	// Progress, if set, is called every few thousand packets while
	// captures are read.
	Progress func(Progress)
	// NginxLogFormat is the log_format of nginx access logs: a name or the
	// directive's text; the best-fitting built-in format when empty.
	NginxLogFormat string
	// Clock says what is known of the logs' clocks.
	Clock ClockOptions
	// HTTP controls the HTTP and WebSocket decoders.
	HTTP http.Options
	// MaxLogLineBytes caps one log line; a longer one is counted as
	// unparsed ("too long"). Default logline.DefaultMaxLineBytes.
	MaxLogLineBytes int
	// NoDecode skips HTTP and WebSocket decoding (wiremortem flows).
	NoDecode bool
	// TableOnly is for the flows table alone (wiremortem flows without
	// --json): each conversation becomes its row as it finishes and is
	// not kept, no JSON is encoded, no rule runs, logs are not read, so
	// memory follows the conversations live at once, not the capture.
	// The document then holds the inputs and the summary only.
	TableOnly bool
	// NoConversationJSON is for a run whose JSON document is not written
	// (analyze without --json): the conversations are not encoded, and
	// WriteJSON and WriteFlowTable fail. Incidents, timeline, rates and
	// the report's conversations are as without it.
	NoConversationJSON bool
	// NoCaptureHashes is for a run that writes neither the document nor
	// the report (analyze for its verdict and exit code): the captures'
	// SHA-256, a second pass over every byte that nothing would show, is
	// not computed (InputFile.SHA256 stays empty).
	NoCaptureHashes bool
	// Rules says which rules run with which thresholds (--rule-config,
	// --set, --rules); nil means the built-in rules with their defaults.
	Rules *rules.Config
	// Shards is how many goroutines follow the captures' conversations
	// (flows.Options.Shards); 0 or 1 means one. The document is the same
	// whatever the number.
	Shards int
}

// Progress says how far reading the captures got.
type Progress struct {
	// BytesRead and BytesTotal count the capture files' bytes (compressed
	// bytes for compressed files).
	BytesRead, BytesTotal int64
	Packets               int64
}

// InputError is an input that could not be read at all, or only up to some
// point. The analysis goes on with the other inputs; the command exits 3.
type InputError struct {
	Path string
	Err  error
}

func (e *InputError) Error() string {
	var ce *capture.Error
	if errors.As(e.Err, &ce) {
		return ce.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

func (e *InputError) Unwrap() error { return e.Err }

// Result is a document plus the input problems met on the way.
type Result struct {
	Document *Document
	// InputErrors lists inputs that were damaged or unreadable; the
	// document covers what could be read.
	InputErrors []*InputError
	// Logs are the records read from log files; Joined puts them on the
	// capture's clock and ties them to conversations.
	Logs   *Logs
	Joined *correlate.Joined
	// convs and decoded are every conversation, in ID order, and its
	// decoded HTTP, kept for WriteJSON and WriteFlowTable (nil after a
	// run with Options.NoConversationJSON or TableOnly).
	convs   []*flows.Conversation
	decoded map[int]*http.Conversation
	// keptConversations is false when convs was not kept.
	keptConversations bool
	// rows holds the flows table of a TableOnly run; tableSummary counts
	// its conversations.
	rows         *rowSpool
	tableSummary Summary
	// stopped is why the context stopped the reading before the
	// captures' ends (Ctrl-C, the memory limit), nil when it did not.
	stopped error
}

// Close releases the conversations and the flows table spool; writing
// them afterwards is an error, not an empty list.
func (r *Result) Close() {
	r.rows.close()
	r.convs, r.decoded, r.keptConversations = nil, nil, false
}

// Run analyses inputs. It fails only on problems that leave nothing to
// report (no input at all); damaged inputs are listed in the result.
func Run(ctx context.Context, inputs []Input, opts Options) (*Result, error) {
	if len(inputs) == 0 {
		return nil, errors.New("no input files")
	}
	if opts.ReportConversations <= 0 {
		opts.ReportConversations = 2000
	}
	res := &Result{Document: &Document{
		Tool:     Tool{Name: "wiremortem", Version: Version, CommandLine: opts.CommandLine},
		Warnings: []Warning{},
	}}
	doc := res.Document
	if opts.TableOnly {
		rows, err := newRowSpool()
		if err != nil {
			return nil, err
		}
		res.rows = rows
	}
	var captures []*openCapture
	var logInputs []Input
	for _, in := range inputs {
		kind := in.Kind
		if kind == "" {
			k, err := Detect(in.Path)
			if err != nil {
				res.fail(InputFile{Path: in.Path}, err)
				continue
			}
			kind = k
		}
		switch kind {
		case KindCapture:
			// The table alone (flows) shows no hash: hashing was a
			// third of its work.
			oc, err := openCaptureFile(in.Path, !opts.TableOnly && !opts.NoCaptureHashes)
			if err != nil {
				res.fail(InputFile{Path: in.Path, Kind: KindCapture}, err)
				continue
			}
			captures = append(captures, oc)
		default:
			logInputs = append(logInputs, Input{Path: in.Path, Kind: kind})
		}
	}
	decoded := map[int]*http.Conversation{}
	convs, stats := trackCaptures(ctx, captures, opts, res, decoded)
	for _, oc := range captures {
		doc.Inputs = append(doc.Inputs, oc.finish())
	}
	if opts.TableOnly {
		sort.SliceStable(doc.Inputs, func(i, j int) bool { return doc.Inputs[i].Path < doc.Inputs[j].Path })
		doc.Summary = res.tableSummary
		doc.Summary.Packets, doc.Summary.Incidents = stats, map[string]int{}
		res.markPartial(ctx)
		return res, nil
	}
	var captureStart time.Time
	for _, c := range convs {
		if captureStart.IsZero() || c.Start.Before(captureStart) {
			captureStart = c.Start
		}
	}
	logs := &Logs{}
	logIndex := map[string]int{}
	// Configurations first: their log_format directives tell how the
	// access logs read.
	var confFormats []namedFormat
	for _, in := range logInputs {
		if in.Kind != KindNginxConf {
			continue
		}
		f := InputFile{Path: in.Path, Kind: in.Kind}
		formats, err := readNginxConf(in.Path, &f)
		if err != nil {
			res.fail(f, err)
			continue
		}
		confFormats = append(confFormats, formats...)
		doc.Inputs = append(doc.Inputs, f)
	}
	for _, in := range logInputs {
		if in.Kind == KindNginxConf {
			continue
		}
		f := InputFile{Path: in.Path, Kind: in.Kind}
		if err := readLog(in.Path, in.Kind, opts, confFormats, captureStart, logs, &f); err != nil {
			res.fail(f, err)
			continue
		}
		logIndex[in.Path] = len(doc.Inputs)
		doc.Inputs = append(doc.Inputs, f)
		doc.Warnings = append(doc.Warnings, logWarnings(&f)...)
	}
	res.Logs = logs
	res.Joined = correlate.Join(correlate.Sources{
		Conversations: convs, HTTP: decoded,
		Straces: logs.Straces, Access: logs.Access, Errors: logs.Errors, Snapshots: logs.Snapshots,
	})
	for path, clock := range res.Joined.Clocks {
		if i, ok := logIndex[path]; ok && doc.Inputs[i].Clock != nil {
			c := doc.Inputs[i].Clock
			c.Applied, c.Estimated = clock.Applied, clock.Estimate
			c.EstimateNote = clock.NotEnough
			if clock.Estimate != nil {
				zone, source := opts.Clock.zoneFor(path, doc.Inputs[i].Kind)
				c.EstimateNote = correlate.DescribeOffset(clock.Applied, clock.Estimate.Resolution, zone, captureStart, source != zoneAssumed)
			}
		}
	}
	sort.SliceStable(doc.Inputs, func(i, j int) bool { return doc.Inputs[i].Path < doc.Inputs[j].Path })

	doc.Summary = Summary{Conversations: len(convs), Packets: stats, Incidents: map[string]int{}}
	for _, c := range convs {
		if doc.Summary.Start.IsZero() || c.Start.Before(doc.Summary.Start) {
			doc.Summary.Start = c.Start
		}
		if c.End.After(doc.Summary.End) {
			doc.Summary.End = c.End
		}
	}
	var spans []rules.CaptureSpan
	for _, in := range doc.Inputs {
		if in.Kind == KindCapture && !in.Last.IsZero() {
			spans = append(spans, rules.CaptureSpan{Source: in.Path, First: in.First, Last: in.Last})
		}
	}
	found := rules.Evaluate(&rules.Input{Conversations: convs, CaptureStart: doc.Summary.Start, CaptureEnd: captureEnd(doc.Inputs), Captures: spans, HTTP: decoded, Logs: res.Joined}, opts.Rules)
	doc.Incidents, doc.IncidentsOmitted, doc.Summary.Incidents = found.Incidents, found.IncidentsOmitted, found.BySeverity
	for _, p := range found.Problems {
		msg := fmt.Sprintf("the rule failed on %d conversations, e.g. %s", p.Count, strings.Join(p.Examples, "; "))
		if p.Count == 0 {
			msg = strings.Join(p.Examples, "; ")
		}
		doc.Warnings = append(doc.Warnings, Warning{Source: "rule " + p.Rule, Message: msg})
	}
	var other []TimelineEvent
	collect := func(ev TimelineEvent) { other = append(other, ev) }
	decodedEvents(convs, decoded, collect)
	logEvents(res.Joined, collect)
	doc.Timeline, doc.TimelineOmitted = BuildTimeline(convs, other, doc.Incidents, opts.MaxTimelineEvents)
	doc.Rates = BuildRates(convs, doc.Summary.Start, doc.Summary.End)
	doc.Conversations = reportConversations(convs, decoded, doc.Incidents, opts.ReportConversations)
	if !opts.NoConversationJSON {
		// Encoded when written, straight into the output: a spool on disk
		// would add a write and a read of the whole list (the
		// conversations are in memory until here anyway).
		res.convs, res.decoded, res.keptConversations = convs, decoded, true
	}
	res.markPartial(ctx)
	return res, nil
}

// StoppedBy says why the reading stopped before the captures' ends: the
// cause of the context's cancellation (one that is context.Canceled for
// Ctrl-C, a memory limit's), nil when the captures were read whole.
func (r *Result) StoppedBy() error { return r.stopped }

// markPartial marks the document partial when the reading stopped before
// the captures' ends, or when Ctrl-C came after it (the output of an
// interrupted command is never taken for a whole one), and says why. A
// memory stop that comes once everything was read marks nothing: the
// captures were read whole.
func (r *Result) markPartial(ctx context.Context) {
	why := r.stopped
	if cause := context.Cause(ctx); why == nil && errors.Is(cause, context.Canceled) {
		why = cause
	}
	if why == nil {
		return
	}
	r.Document.Summary.Partial = true
	r.Document.Summary.PartialReason = why.Error()
	if errors.Is(why, context.Canceled) {
		// signal.NotifyContext's cause names the signal ("interrupt
		// signal received"); a plain cancel says nothing more.
		r.Document.Summary.PartialReason = "interrupted"
		if why != context.Canceled {
			r.Document.Summary.PartialReason += ": " + why.Error()
		}
	}
}

// reportConversations picks the conversations the HTML report draws
// (ByInterest); the JSON document lists every conversation regardless.
func reportConversations(convs []*flows.Conversation, decoded map[int]*http.Conversation, incidents []rules.Incident, max int) []Conversation {
	chosen := ByInterest(convs, func(c *flows.Conversation) *flows.Conversation { return c }, CitedConversations(incidents), max)
	out := make([]Conversation, len(chosen))
	for i, c := range chosen {
		out[i] = Conversation{Conversation: c, HTTP: decoded[c.ID]}
	}
	return out
}

// CitedConversations returns the IDs of the conversations incidents cite.
func CitedConversations(incidents []rules.Incident) map[int]bool {
	cited := map[int]bool{}
	for _, inc := range incidents {
		for _, f := range inc.Flows {
			cited[f.Conversation] = true
		}
	}
	return cited
}

// ByInterest returns at most max of items, given in ID order, in ID order:
// the conversations incidents cite first (their ladders and charts need
// them), then those that did not end cleanly (reset, zero window, not
// SF), then the rest, each group in ID order. conv gives an item's
// conversation, cited the conversations incidents cite
// (CitedConversations). The document's report conversations and the
// report's table are both chosen this way.
func ByInterest[T any](items []T, conv func(T) *flows.Conversation, cited map[int]bool, max int) []T {
	if len(items) <= max {
		return items
	}
	var groups [3][]T
	for _, x := range items {
		c, rank := conv(x), 2
		switch {
		case cited[c.ID]:
			rank = 0
		case c.FromClient.RSTs+c.FromServer.RSTs > 0 || len(c.ZeroWindows) > 0 || c.ConnState != "SF":
			rank = 1
		}
		groups[rank] = append(groups[rank], x)
	}
	chosen := make([]T, 0, max)
	for _, g := range groups {
		chosen = append(chosen, g[:min(len(g), max-len(chosen))]...)
	}
	slices.SortFunc(chosen, func(x, y T) int { return cmp.Compare(conv(x).ID, conv(y).ID) })
	return chosen
}

// captureEnd is the time of the last packet of any capture (TCP or not):
// a socket still open then was open at least until that time.
func captureEnd(inputs []InputFile) time.Time {
	var end time.Time
	for _, in := range inputs {
		if in.Kind == KindCapture && in.Last.After(end) {
			end = in.Last
		}
	}
	return end
}

// logWarnings says what of a log was not used: lines not understood (the
// first one located) and records past the per-file cap.
func logWarnings(f *InputFile) []Warning {
	var out []Warning
	if f.Unparsed > 0 {
		w := Warning{Source: f.Path, Message: fmt.Sprintf("%d of %d lines not understood", f.Unparsed, f.Records)}
		if len(f.UnparsedExamples) > 0 {
			u := f.UnparsedExamples[0]
			w.Line, w.Offset = u.Ref.Line, u.Offset
			w.Message += fmt.Sprintf(", the first at line %d (%s); examples in the inputs table", u.Ref.Line, u.Reason)
		}
		out = append(out, w)
	}
	if f.Dropped > 0 {
		out = append(out, Warning{Source: f.Path, Message: fmt.Sprintf("%d records past the cap of %d per log file were counted, not kept: joins, rules and the timeline use the first %d", f.Dropped, MaxLogRecords, MaxLogRecords)})
	}
	return out
}

// fail records an input that could not be used.
func (r *Result) fail(f InputFile, err error) {
	ie := &InputError{Path: f.Path, Err: err}
	r.InputErrors = append(r.InputErrors, ie)
	f.Damage = ie.Error()
	r.Document.Inputs = append(r.Document.Inputs, f)
	r.Document.Warnings = append(r.Document.Warnings, warningFor(f.Path, err))
}

func warningFor(path string, err error) Warning {
	w := Warning{Source: path, Message: err.Error()}
	var ce *capture.Error
	if errors.As(err, &ce) {
		w.Record, w.Offset = ce.Record, ce.Offset
	}
	return w
}

// openCapture is a capture file being read once: the bytes the packet
// reader takes are also hashed, on another core, unless no hash is wanted
// (hasher nil).
type openCapture struct {
	file   *os.File
	hasher *hashingReader
	reader *capture.Reader
	info   InputFile
}

func openCaptureFile(path string, hash bool) (*openCapture, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		f.Close()
		return nil, &capture.Error{File: path, Err: errors.New("is a directory, not a capture file")}
	}
	var h *hashingReader
	var src io.Reader = f
	if hash {
		h = newHashingReader(f)
		src = h
	}
	r, err := capture.NewReader(path, src)
	if err != nil {
		if h != nil {
			h.sum()
		}
		f.Close()
		return nil, err
	}
	info := r.Info()
	return &openCapture{file: f, hasher: h, reader: r, info: InputFile{Path: path, Kind: KindCapture, Size: st.Size(), Capture: &info}}, nil
}

// finish closes the file and collects its hash.
func (oc *openCapture) finish() InputFile {
	if oc.hasher != nil {
		oc.info.SHA256 = oc.hasher.sum()
	}
	oc.reader.Close()
	oc.file.Close()
	oc.info.Records = oc.reader.Records()
	return oc.info
}

// hashingReader passes a file's bytes through and hashes them on its own
// goroutine, so the file is read from disk once and hashing costs the
// packet path only a copy.
type hashingReader struct {
	r      io.Reader
	chunks chan []byte
	free   chan []byte
	result chan string
	done   bool
}

func newHashingReader(r io.Reader) *hashingReader {
	h := &hashingReader{r: r, chunks: make(chan []byte, 8), free: make(chan []byte, 8), result: make(chan string, 1)}
	go func() {
		sum := sha256.New()
		for c := range h.chunks {
			sum.Write(c)
			select {
			case h.free <- c[:0]:
			default:
			}
		}
		h.result <- hex.EncodeToString(sum.Sum(nil))
	}()
	return h
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if n > 0 && !h.done {
		var c []byte
		select {
		case c = <-h.free:
		default:
		}
		h.chunks <- append(c, p[:n]...)
	}
	return n, err
}

// sum hashes whatever the packet reader left unread (after damage or an
// interruption) and returns the file's SHA-256.
func (h *hashingReader) sum() string {
	if h.done {
		return <-h.result
	}
	buf := make([]byte, 256<<10)
	for {
		if _, err := h.Read(buf); err != nil {
			break
		}
	}
	h.done = true
	close(h.chunks)
	s := <-h.result
	h.result <- s
	return s
}

// timedSource stops the merge when ctx is cancelled, reports progress and
// records each file's time range.
type timedSource struct {
	ctx      context.Context
	m        *capture.Merger
	byPath   map[string]*openCapture
	captures []*openCapture
	total    int64
	progress func(Progress)
	counter  int64
	// stopped is why ctx stopped the reading, nil when it read on to
	// the captures' ends.
	stopped error
}

func (s *timedSource) Next(p *capture.Packet) error {
	s.counter++
	if s.counter&0xfff == 0 {
		if s.ctx.Err() != nil {
			s.stopped = context.Cause(s.ctx)
			return io.EOF
		}
		s.report()
	}
	if err := s.m.Next(p); err != nil {
		return err
	}
	if oc := s.byPath[p.Ref.Source]; oc != nil {
		if oc.info.First.IsZero() || p.Time.Before(oc.info.First) {
			oc.info.First = p.Time
		}
		if p.Time.After(oc.info.Last) {
			oc.info.Last = p.Time
		}
	}
	return nil
}

func (s *timedSource) report() {
	if s.progress == nil {
		return
	}
	var read int64
	for _, oc := range s.captures {
		if pos, err := oc.file.Seek(0, io.SeekCurrent); err == nil {
			read += pos
		}
	}
	s.progress(Progress{BytesRead: read, BytesTotal: s.total, Packets: s.counter})
}

// trackCaptures merges the captures by time and follows every conversation.
func trackCaptures(ctx context.Context, captures []*openCapture, opts Options, res *Result, decoded map[int]*http.Conversation) ([]*flows.Conversation, flows.Stats) {
	var convs []*flows.Conversation
	if len(captures) == 0 {
		return nil, flows.Stats{}
	}
	readers := make([]*capture.Reader, len(captures))
	byPath := map[string]*openCapture{}
	for i, oc := range captures {
		readers[i] = oc.reader
		byPath[oc.info.Path] = oc
	}
	m := capture.Merge(readers, func(e *capture.Error) {
		res.InputErrors = append(res.InputErrors, &InputError{Path: e.File, Err: e})
		res.Document.Warnings = append(res.Document.Warnings, warningFor(e.File, e))
		if oc := byPath[e.File]; oc != nil {
			oc.info.Damage = e.Error()
		}
	})
	// results holds the decoded HTTP by conversation until the IDs are
	// final (a sharded run renumbers them at the end).
	results := map[*flows.Conversation]*http.Conversation{}
	topts := opts.Tracker
	topts.OnDone = func(c *flows.Conversation, sink flows.Sink) {
		if opts.TableOnly {
			res.rows.write(c.ID, flowRow(&Conversation{Conversation: c}))
			sum := &res.tableSummary
			sum.Conversations++
			if sum.Start.IsZero() || c.Start.Before(sum.Start) {
				sum.Start = c.Start
			}
			if c.End.After(sum.End) {
				sum.End = c.End
			}
			return
		}
		c.Trim()
		convs = append(convs, c)
		if hs, ok := sink.(*httpSink); ok {
			if r := hs.result(); r != nil {
				results[c] = r
			}
		}
	}
	topts.Shards = opts.Shards
	// The table shows no key packets or window samples: most of a long
	// conversation's memory.
	topts.NoDetail = opts.TableOnly
	if !opts.NoDecode {
		httpOpts := opts.HTTP
		topts.NewSink = func(c *flows.Conversation) flows.Sink { return newHTTPSink(c, &httpOpts) }
	}
	tr := flows.NewTracker(topts)
	src := &timedSource{ctx: ctx, m: m, byPath: byPath, captures: captures, progress: opts.Progress}
	for _, oc := range captures {
		src.total += oc.info.Size
	}
	tr.Run(src)
	res.stopped = src.stopped
	if src.progress != nil {
		src.progress(Progress{BytesRead: src.total, BytesTotal: src.total, Packets: src.counter})
	}
	if a, b, ok := m.Overlap(); ok {
		res.Document.Warnings = append(res.Document.Warnings, Warning{Source: b, Message: fmt.Sprintf("packets of %s and %s interleave in time: merged as one capture (rotated parts do not overlap; two captures of the same traffic would count each packet twice)", a, b)})
	}
	if opts.Shards > 1 {
		flows.Renumber(convs)
		if res.rows != nil {
			res.rows.renumber()
		}
	} else {
		sort.Slice(convs, func(i, j int) bool { return convs[i].ID < convs[j].ID })
	}
	for c, r := range results {
		decoded[c.ID] = r
	}
	return convs, tr.Stats()
}
