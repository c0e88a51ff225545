package analysis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"
	"strings"
	"time"

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
	// MaxConversations caps the conversations listed in the document (the
	// rest still count and are seen by rules). Default 100,000.
	MaxConversations int
	// Rules says which rules run with which thresholds (--rule-config,
	// --set, --rules); nil means the built-in rules with their defaults.
	Rules *rules.Config
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
}

// Run analyses inputs. It fails only on problems that leave nothing to
// report (no input at all); damaged inputs are listed in the result.
func Run(ctx context.Context, inputs []Input, opts Options) (*Result, error) {
	if len(inputs) == 0 {
		return nil, errors.New("no input files")
	}
	if opts.MaxConversations <= 0 {
		opts.MaxConversations = 100_000
	}
	res := &Result{Document: &Document{
		Tool:     Tool{Name: "wiremortem", Version: Version},
		Warnings: []Warning{},
	}}
	doc := res.Document
	var captures []*openCapture
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
			oc, err := openCaptureFile(in.Path)
			if err != nil {
				res.fail(InputFile{Path: in.Path, Kind: KindCapture}, err)
				continue
			}
			captures = append(captures, oc)
		default:
			res.fail(InputFile{Path: in.Path, Kind: kind}, fmt.Errorf("%s files are not supported yet", kind))
		}
	}
	convs, stats := trackCaptures(ctx, captures, opts, res)
	for _, oc := range captures {
		doc.Inputs = append(doc.Inputs, oc.finish())
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
	found := rules.Evaluate(&rules.Input{Conversations: convs, CaptureStart: doc.Summary.Start, CaptureEnd: captureEnd(doc.Inputs)}, opts.Rules)
	doc.Incidents, doc.IncidentsOmitted, doc.Summary.Incidents = found.Incidents, found.IncidentsOmitted, found.BySeverity
	for _, p := range found.Problems {
		doc.Warnings = append(doc.Warnings, Warning{Source: "rule " + p.Rule, Message: fmt.Sprintf("the rule failed on %d conversations, e.g. %s", p.Count, strings.Join(p.Examples, "; "))})
	}
	doc.Conversations = make([]Conversation, 0, min(len(convs), opts.MaxConversations))
	for i, c := range convs {
		if i >= opts.MaxConversations {
			doc.ConversationsOmitted = len(convs) - i
			break
		}
		doc.Conversations = append(doc.Conversations, Conversation{Conversation: c})
	}
	if ctx.Err() != nil {
		doc.Summary.Partial = true
	}
	return res, nil
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

// openCapture is a capture file being read, hashed as it goes.
type openCapture struct {
	file   *os.File
	hash   hash.Hash
	reader *capture.Reader
	info   InputFile
}

func openCaptureFile(path string) (*openCapture, error) {
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
	h := sha256.New()
	r, err := capture.NewReader(path, io.TeeReader(f, h))
	if err != nil {
		f.Close()
		return nil, err
	}
	info := r.Info()
	return &openCapture{file: f, hash: h, reader: r, info: InputFile{Path: path, Kind: KindCapture, Size: st.Size(), Capture: &info}}, nil
}

// finish hashes what the reader left unread and closes the file.
func (oc *openCapture) finish() InputFile {
	io.Copy(oc.hash, oc.file)
	oc.reader.Close()
	oc.file.Close()
	oc.info.SHA256 = hex.EncodeToString(oc.hash.Sum(nil))
	oc.info.Records = oc.reader.Records()
	return oc.info
}

// timedSource stops the merge when ctx is cancelled and records each
// file's time range.
type timedSource struct {
	ctx     context.Context
	m       *capture.Merger
	byPath  map[string]*openCapture
	counter int
}

func (s *timedSource) Next(p *capture.Packet) error {
	s.counter++
	if s.counter&0xfff == 0 && s.ctx.Err() != nil {
		return io.EOF
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

// trackCaptures merges the captures by time and follows every conversation.
func trackCaptures(ctx context.Context, captures []*openCapture, opts Options, res *Result) ([]*flows.Conversation, flows.Stats) {
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
	topts := opts.Tracker
	topts.OnDone = func(c *flows.Conversation, _ flows.Sink) { convs = append(convs, c) }
	tr := flows.NewTracker(topts)
	tr.Run(&timedSource{ctx: ctx, m: m, byPath: byPath})
	if a, b, ok := m.Overlap(); ok {
		res.Document.Warnings = append(res.Document.Warnings, Warning{Source: b, Message: fmt.Sprintf("packets of %s and %s interleave in time: merged as one capture (rotated parts do not overlap; two captures of the same traffic would count each packet twice)", a, b)})
	}
	sort.Slice(convs, func(i, j int) bool { return convs[i].ID < convs[j].ID })
	return convs, tr.Stats()
}
