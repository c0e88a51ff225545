package serve

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"slices"

	"wiremortem/analysis"
	"wiremortem/batch"
	"wiremortem/htmlreport"
)

// Progress is how far a queued or running case got.
type Progress struct {
	State State `json:"state"`
	// QueuePosition is the case's place in the queue, 1 for the next to
	// run; 0 once running.
	QueuePosition int `json:"queue_position,omitempty"`
	// BytesRead of BytesTotal are the captures' bytes read so far, as
	// the analysis reports them; Packets the packets read.
	BytesRead  int64 `json:"bytes_read"`
	BytesTotal int64 `json:"bytes_total"`
	Packets    int64 `json:"packets"`
}

// job is a case waiting for a worker or being analysed. Its fields but
// ctx, cancel and done are guarded by Server.mu.
type job struct {
	id       string
	ctx      context.Context
	cancel   context.CancelFunc
	running  bool
	deleted  bool
	progress analysis.Progress
	// done is closed when the worker is through with a running job.
	done chan struct{}
}

var errBusy = &requestError{http.StatusConflict, "the case is queued or being analysed"}

// enqueueLocked queues a case for analysis, once; the caller holds s.mu.
func (s *Server) enqueueLocked(id string) {
	if s.jobs[id] != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	j := &job{id: id, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	s.jobs[id] = j
	s.queue = append(s.queue, j)
	select {
	case s.wake <- struct{}{}:
	default:
		// Every worker is already due to look at the queue.
	}
}

func (s *Server) enqueue(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enqueueLocked(id)
}

// progress is a queued or running case's progress, nil for any other.
func (s *Server) progress(id string) *Progress {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil {
		return nil
	}
	p := &Progress{State: Running, BytesRead: j.progress.BytesRead, BytesTotal: j.progress.BytesTotal, Packets: j.progress.Packets}
	if !j.running {
		p.State = Queued
		p.QueuePosition = slices.Index(s.queue, j) + 1
	}
	return p
}

// work analyses queued cases, one at a time, until the server closes.
func (s *Server) work() {
	defer s.workers.Done()
	for {
		j := s.next()
		if j == nil {
			return
		}
		s.analyse(j)
	}
}

// next waits for a queued case; nil when the server closes.
func (s *Server) next() *job {
	for {
		s.mu.Lock()
		if s.ctx.Err() == nil && len(s.queue) > 0 {
			j := s.queue[0]
			s.queue = s.queue[1:]
			j.running = true
			s.mu.Unlock()
			return j
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			return nil
		}
	}
}

// analyse runs one case through batch, as a group of one, so a case's
// directory is a batch group's: summary.json, report.json, report.html.
func (s *Server) analyse(j *job) {
	defer func() {
		s.mu.Lock()
		delete(s.jobs, j.id)
		s.mu.Unlock()
		close(j.done)
	}()
	if s.beforeAnalyse != nil {
		s.beforeAnalyse(j.ctx, j.id)
	}
	var m Manifest
	if err := s.updateManifest(j.id, func(mm *Manifest) {
		mm.State, mm.Note = Running, ""
		m = *mm
	}); err != nil {
		s.logf("case %s: %v", j.id, err)
		return
	}
	opts := s.cfg.Analysis
	opts.Progress = func(p analysis.Progress) {
		s.mu.Lock()
		j.progress = p
		s.mu.Unlock()
	}
	state, note := Done, ""
	var entry batch.Entry
	if err := m.Settings.apply(&opts); err != nil {
		// The form's settings were checked at upload: this manifest was
		// edited by hand.
		note = "settings: " + err.Error()
	} else {
		group := batch.Group{Name: j.id, Dir: filepath.Join(s.dir, j.id, inputsDir)}
		for _, u := range m.Uploads {
			p := filepath.Join(group.Dir, u.Name)
			if u.Kind == analysis.KindCapture {
				group.Captures = append(group.Captures, p)
			} else {
				// Logs, and files of no kind: the analysis detects
				// again and keeps the reader's error for the latter.
				group.Logs = append(group.Logs, p)
			}
		}
		entries, _ := batch.Run(j.ctx, []batch.Group{group}, batch.Options{Out: s.dir, Jobs: 1, Analysis: opts, RenderHTML: renderHTML})
		if len(entries) == 1 {
			entry = entries[0]
		}
	}
	s.mu.Lock()
	deleted := j.deleted
	s.mu.Unlock()
	if deleted {
		return
	}
	if j.ctx.Err() != nil {
		state, note = Interrupted, "the server stopped during the analysis; the report covers what was read until then"
		if entry.Group == "" {
			note = "the server stopped before the analysis began"
		}
	}
	if err := s.updateManifest(j.id, func(mm *Manifest) { mm.State, mm.Note = state, note }); err != nil {
		s.logf("case %s: %v", j.id, err)
		return
	}
	outcome := string(state)
	if state == Done && entry.Status != "" {
		outcome = entry.Status
	}
	s.logf("case %s: %s%s, %d conversations, worst incident %q%s", j.id, outcome, prefixed(": ", note), entry.Conversations, entry.WorstSeverity, prefixed(": ", entry.Error))
}

// renderHTML writes the same report analyze -o writes.
func renderHTML(w io.Writer, res *analysis.Result) error {
	return htmlreport.Write(w, res.Document, htmlreport.Options{})
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// reanalyse queues a finished or interrupted case again with new
// settings.
func (s *Server) reanalyse(id string, settings Settings) error {
	if err := settings.apply(&analysis.Options{}); err != nil {
		return badRequest("%v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs[id] != nil {
		return errBusy
	}
	if err := s.removeOutputs(id); err != nil {
		return err
	}
	if err := s.editManifestLocked(id, func(m *Manifest) {
		m.State, m.Note, m.Settings = Queued, "", settings
	}); err != nil {
		return err
	}
	s.enqueueLocked(id)
	return nil
}

// deleteCase stops a case's analysis if it runs, takes it off the queue
// and removes its directory.
func (s *Server) deleteCase(id string) error {
	s.mu.Lock()
	j := s.jobs[id]
	var wait chan struct{}
	if j != nil {
		j.deleted = true
		j.cancel()
		if j.running {
			wait = j.done
		} else {
			s.queue = slices.DeleteFunc(s.queue, func(q *job) bool { return q == j })
			delete(s.jobs, id)
		}
	}
	s.mu.Unlock()
	if wait != nil {
		<-wait
	}
	return s.root.RemoveAll(id)
}
