package serve

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"wiremortem/analysis"
	"wiremortem/batch"
)

// A case is a directory under the data directory, laid out as a batch
// group's output directory plus what serve adds, so that serve opens a
// batch --out directory as cases and batch --merge indexes serve's cases:
//
//	<id>/manifest.json  serve's manifest: name, state, settings, uploads
//	<id>/inputs/        the uploaded files
//	<id>/summary.json   batch.Entry: status, error, counts, rules
//	<id>/report.json    the analysis document (analyze --json)
//	<id>/report.html    the report (analyze -o)
//
// A batch group's directory has the last three only.
const (
	manifestName = "manifest.json"
	inputsDir    = "inputs"
	summaryName  = "summary.json" // batch writes it; its name is batch's
	reportJSON   = "report.json"
	reportHTML   = "report.html"
	// stagingPrefix marks a case whose upload is still arriving: hidden,
	// so listings and batch skip it, and renamed to the case id once
	// complete. Left-overs of a crash are removed at start.
	stagingPrefix = ".upload-"
)

// State is where a case is in its life.
type State string

const (
	Queued  State = "queued"
	Running State = "running"
	// Done means the analysis ran to its end: summary.json says how it
	// went (analysed or failed, and the reader's error).
	Done State = "done"
	// Interrupted means the server stopped during the analysis: the
	// report, if any, covers what was read until then.
	Interrupted State = "interrupted"
)

// Manifest is serve's record of a case, manifest.json in its directory.
type Manifest struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	State   State     `json:"state"`
	// Note says why a case was interrupted or could not be analysed.
	Note     string   `json:"note,omitempty"`
	Settings Settings `json:"settings"`
	Uploads  []Upload `json:"uploads"`
}

// Settings are what the uploader said of the inputs, as typed.
type Settings struct {
	// TimeZones are ZONE or SOURCE=ZONE, Offsets SOURCE=DURATION, Date
	// YYYY-MM-DD: analysis.ParseClock reads them.
	TimeZones []string `json:"time_zones,omitempty"`
	Offsets   []string `json:"offsets,omitempty"`
	Date      string   `json:"date,omitempty"`
	// LogFormat is the nginx access log's log_format (a name or the
	// directive's text).
	LogFormat string `json:"nginx_log_format,omitempty"`
}

// apply checks the settings and adds them to the analysis options.
func (s Settings) apply(opts *analysis.Options) error {
	clock, err := analysis.ParseClock(s.TimeZones, s.Offsets, s.Date)
	if err != nil {
		return err
	}
	opts.Clock = clock
	opts.NginxLogFormat = s.LogFormat
	return nil
}

// Upload is one uploaded file.
type Upload struct {
	// Name is the file's name under inputs/; SentName the name the
	// browser sent, when making it safe changed it.
	Name     string `json:"name"`
	SentName string `json:"sent_name,omitempty"`
	Size     int64  `json:"size"`
	// SHA256 is computed while the file was written.
	SHA256 string `json:"sha256"`
	// Kind is what analysis.Detect read in the file's first bytes;
	// KindError why it could not tell.
	Kind      analysis.Kind `json:"kind,omitempty"`
	KindError string        `json:"kind_error,omitempty"`
}

// caseID matches the directory names serve makes and batch's group names
// (letters, digits, '.', '_' and '-', never first a dot): anything else in
// a URL is not a case.
var caseID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`)

func validID(id string) bool { return caseID.MatchString(id) }

// newCaseID names a case by its upload time, sortable, plus 40 random bits
// so that cases uploaded in the same second differ.
func newCaseID(now time.Time) string {
	return now.UTC().Format("20060102-150405") + "-" + strings.ToLower(rand.Text()[:8])
}

// Case is one case as the pages show it.
type Case struct {
	ID string
	// Manifest is nil for a batch group's directory.
	Manifest *Manifest
	// Summary is nil until an analysis wrote one.
	Summary *batch.Entry
	Created time.Time
	// HasReport and HasJSON say which outputs exist.
	HasReport, HasJSON bool
	// Progress is set while the case is queued or running.
	Progress *Progress
}

// State is the case's state in one word: queued, running, interrupted,
// or the analysis's status (analysed, failed, unchanged).
func (c *Case) State() string {
	if c.Progress != nil {
		return string(c.Progress.State)
	}
	if c.Manifest != nil && c.Manifest.State != Done {
		return string(c.Manifest.State)
	}
	if c.Summary != nil {
		return c.Summary.Status
	}
	return "failed"
}

// Inputs are the case's files: the uploads, or a batch group's inputs.
func (c *Case) Inputs() []Upload {
	if c.Manifest != nil {
		return c.Manifest.Uploads
	}
	if c.Summary == nil {
		return nil
	}
	var in []Upload
	for _, d := range c.Summary.Inputs {
		in = append(in, Upload{Name: path.Base(strings.ReplaceAll(d.Path, `\`, "/")), Size: d.Size, SHA256: d.SHA256})
	}
	return in
}

// Name is the name the uploader gave the case, or its id.
func (c *Case) Name() string {
	if c.Manifest != nil && c.Manifest.Name != "" {
		return c.Manifest.Name
	}
	return c.ID
}

// readCase reads a case's directory; ok is false when it holds neither a
// manifest nor a summary (not a case).
func (s *Server) readCase(id string) (*Case, bool) {
	if !validID(id) {
		return nil, false
	}
	// Progress first: a job ends by writing the final manifest and then
	// leaving the job table, so a case read as live is still followed
	// (its page polls), and one read as finished has its final manifest.
	// Read the other way round, a job ending in between left a page
	// saying "running" with nothing to poll.
	c := &Case{ID: id, Progress: s.progress(id)}
	var m Manifest
	if b, err := s.root.ReadFile(path.Join(id, manifestName)); err == nil && json.Unmarshal(b, &m) == nil {
		c.Manifest = &m
		c.Created = m.Created
	}
	var e batch.Entry
	if b, err := s.root.ReadFile(path.Join(id, summaryName)); err == nil && json.Unmarshal(b, &e) == nil {
		c.Summary = &e
		if c.Created.IsZero() {
			if st, err := s.root.Stat(path.Join(id, summaryName)); err == nil {
				c.Created = st.ModTime()
			}
		}
	}
	if c.Manifest == nil && c.Summary == nil {
		return nil, false
	}
	c.HasReport = s.isFile(path.Join(id, reportHTML))
	c.HasJSON = s.isFile(path.Join(id, reportJSON))
	return c, true
}

func (s *Server) isFile(name string) bool {
	st, err := s.root.Stat(name)
	return err == nil && st.Mode().IsRegular()
}

// listCases reads every case, newest first.
func (s *Server) listCases() ([]*Case, error) {
	entries, err := fs.ReadDir(s.root.FS(), ".")
	if err != nil {
		return nil, err
	}
	var cases []*Case
	for _, d := range entries {
		if !d.IsDir() {
			continue
		}
		if c, ok := s.readCase(d.Name()); ok {
			cases = append(cases, c)
		}
	}
	sort.Slice(cases, func(i, j int) bool {
		if !cases[i].Created.Equal(cases[j].Created) {
			return cases[i].Created.After(cases[j].Created)
		}
		return cases[i].ID > cases[j].ID
	})
	return cases, nil
}

// writeManifest replaces a case's manifest in one rename, so a reader
// sees the old one or the new one, never half of one.
func (s *Server) writeManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := path.Join(dir, manifestName+".tmp")
	if err := s.root.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return s.root.Rename(tmp, path.Join(dir, manifestName))
}

// updateManifest changes a serve case's manifest under the server's lock.
func (s *Server) updateManifest(id string, change func(*Manifest)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.editManifestLocked(id, change)
}

// editManifestLocked changes a case's manifest; the caller holds s.mu.
func (s *Server) editManifestLocked(id string, change func(*Manifest)) error {
	b, err := s.root.ReadFile(path.Join(id, manifestName))
	if err != nil {
		return err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	change(&m)
	return s.writeManifest(id, &m)
}

// removeOutputs deletes an analysis's outputs before the case is analysed
// again: batch would otherwise take an interrupted run's summary for a
// finished one and skip the inputs as unchanged.
func (s *Server) removeOutputs(id string) error {
	for _, name := range []string{summaryName, reportJSON, reportHTML} {
		if err := s.root.Remove(path.Join(id, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// resume readies the data directory after a stop: half-arrived uploads
// are removed, cases left queued are queued again (oldest first), and
// cases left running are marked interrupted.
func (s *Server) resume() error {
	entries, err := fs.ReadDir(s.root.FS(), ".")
	if err != nil {
		return err
	}
	var queued []*Case
	for _, d := range entries {
		if strings.HasPrefix(d.Name(), stagingPrefix) {
			if err := s.root.RemoveAll(d.Name()); err != nil {
				return err
			}
			continue
		}
		c, ok := s.readCase(d.Name())
		if !ok || c.Manifest == nil {
			continue
		}
		switch c.Manifest.State {
		case Queued:
			queued = append(queued, c)
		case Running:
			if err := s.updateManifest(c.ID, func(m *Manifest) {
				m.State, m.Note = Interrupted, "the server stopped during the analysis"
			}); err != nil {
				return err
			}
		}
	}
	sort.Slice(queued, func(i, j int) bool { return queued[i].Created.Before(queued[j].Created) })
	for _, c := range queued {
		s.enqueue(c.ID)
	}
	return nil
}
