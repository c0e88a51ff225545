package serve

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"wiremortem/analysis"
)

// What a form may send besides its files. The files' sizes are the
// server's flags (Config.MaxFileBytes, MaxCaseBytes).
const (
	// maxFieldBytes caps one text field: a long log_format directive
	// fits.
	maxFieldBytes = 64 << 10
	maxFields     = 32
	maxFiles      = 256
	// formOverhead is what the body may carry beyond the files' bytes:
	// part headers, boundaries and the text fields.
	formOverhead = maxFields*maxFieldBytes + maxFiles*4<<10
	// maxNameBytes caps a file's name on disk.
	maxNameBytes = 120
	// copyBuffer is the chunk an upload is written to disk in.
	copyBuffer = 256 << 10
)

// The form's field names.
const (
	fieldFiles     = "files"
	fieldName      = "name"
	fieldTimeZones = "time_zones"
	fieldOffsets   = "offsets"
	fieldDate      = "date"
	fieldLogFormat = "nginx_log_format"
)

// requestError is a refused request: the status to answer and why, in
// words for the person who sent it.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// receiveCase reads a multipart upload as it arrives: every file goes
// straight to disk through a SHA-256, under the per-file and per-case
// caps; nothing is held in memory beyond one copy buffer and the text
// fields. The case appears (its staging directory renamed to its id) only
// once the whole upload arrived and its settings are valid, and is then
// queued.
func (s *Server) receiveCase(w http.ResponseWriter, r *http.Request) (string, error) {
	s.uploads.Add(1)
	defer s.uploads.Done()
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxCaseBytes+formOverhead)
	mr, err := r.MultipartReader()
	if err != nil {
		return "", badRequest("not a multipart/form-data upload: %v", err)
	}
	now := time.Now()
	id := newCaseID(now)
	staging := stagingPrefix + id
	if err := s.root.MkdirAll(path.Join(staging, inputsDir), 0o700); err != nil {
		return "", err
	}
	complete := false
	defer func() {
		if !complete {
			s.root.RemoveAll(staging)
		}
	}()
	m := &Manifest{Created: now.UTC(), State: Queued, Uploads: []Upload{}}
	var total int64
	fields := 0
	buf := make([]byte, copyBuffer)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", readError(err, s.cfg.MaxCaseBytes)
		}
		if part.FormName() == fieldFiles {
			if part.FileName() == "" {
				// A file input with nothing chosen sends an empty part.
				continue
			}
			if len(m.Uploads) == maxFiles {
				return "", badRequest("more than %d files in one case", maxFiles)
			}
			u, err := s.receiveFile(path.Join(staging, inputsDir), part, s.cfg.MaxFileBytes, s.cfg.MaxCaseBytes-total, buf)
			if err != nil {
				return "", err
			}
			total += u.Size
			m.Uploads = append(m.Uploads, u)
			continue
		}
		if fields++; fields > maxFields {
			return "", badRequest("more than %d form fields", maxFields)
		}
		value, err := readField(part)
		if err != nil {
			return "", err
		}
		if err := m.setField(part.FormName(), value); err != nil {
			return "", err
		}
	}
	if len(m.Uploads) == 0 {
		return "", badRequest("no files in the upload: choose or drop at least one capture or log")
	}
	if err := m.Settings.apply(&analysis.Options{}); err != nil {
		return "", badRequest("%v", err)
	}
	if m.Name == "" {
		m.Name = m.Uploads[0].Name
		if len(m.Uploads) > 1 {
			m.Name += fmt.Sprintf(" and %d more", len(m.Uploads)-1)
		}
	}
	for i := range m.Uploads {
		u := &m.Uploads[i]
		kind, err := analysis.Detect(filepath.Join(s.dir, staging, inputsDir, u.Name))
		if err != nil {
			u.KindError = err.Error()
		}
		u.Kind = kind
	}
	if err := s.writeManifest(staging, m); err != nil {
		return "", err
	}
	if err := s.root.Rename(staging, id); err != nil {
		return "", err
	}
	complete = true
	s.enqueue(id)
	s.logf("case %s: %d files, %s, queued", id, len(m.Uploads), formatBytes(total))
	return id, nil
}

// setField takes one text field of the form.
func (m *Manifest) setField(name, value string) error {
	switch name {
	case fieldName:
		m.Name = strings.TrimSpace(value)
	case fieldTimeZones:
		m.Settings.TimeZones = splitList(value)
	case fieldOffsets:
		m.Settings.Offsets = splitList(value)
	case fieldDate:
		m.Settings.Date = strings.TrimSpace(value)
	case fieldLogFormat:
		m.Settings.LogFormat = strings.TrimSpace(value)
	default:
		return badRequest("unexpected form field %q", name)
	}
	return nil
}

// splitList splits a field of zones or offsets written one per line or
// separated by spaces or commas.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == ',' })
}

func readField(part *multipart.Part) (string, error) {
	b, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
	if err != nil {
		return "", readError(err, 0)
	}
	if len(b) > maxFieldBytes {
		return "", badRequest("form field %q is over %s", part.FormName(), formatBytes(maxFieldBytes))
	}
	return string(b), nil
}

// receiveFile writes one file part into dir, hashing it on the way, and
// stops past maxFile bytes or past what is left of the case's allowance.
func (s *Server) receiveFile(dir string, part *multipart.Part, maxFile, caseLeft int64, buf []byte) (Upload, error) {
	sent := part.FileName()
	f, name, err := s.createUnique(dir, safeName(sent))
	if err != nil {
		return Upload{}, err
	}
	limit := min(maxFile, caseLeft)
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(f, h), io.LimitReader(part, limit+1), buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Upload{}, readError(err, s.cfg.MaxCaseBytes)
	}
	if n > limit {
		if maxFile <= caseLeft {
			return Upload{}, &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("%q is over the limit of %s per file", sent, formatBytes(maxFile))}
		}
		return Upload{}, &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("the files are over the limit of %s per case", formatBytes(s.cfg.MaxCaseBytes))}
	}
	u := Upload{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	if sent != name {
		u.SentName = sent
	}
	return u, nil
}

// readError says what went wrong reading or storing an upload: the body
// over its cap (413), a body that broke off or is not multipart (400), or
// the disk (an error of the server's own, 500).
func readError(err error, caseCap int64) error {
	var tooBig *http.MaxBytesError
	var disk *fs.PathError
	switch {
	case errors.As(err, &tooBig):
		return &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("the upload is over the limit of %s per case", formatBytes(caseCap))}
	case errors.As(err, &disk):
		return err
	default:
		return badRequest("the upload broke off: %v", err)
	}
}

// createUnique creates name in dir, or name-2, name-3... when a file of
// that name is already there: an upload never replaces another.
func (s *Server) createUnique(dir, name string) (*os.File, string, error) {
	ext := path.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	for i := 1; i <= maxFiles+1; i++ {
		candidate := name
		if i > 1 {
			candidate = fmt.Sprintf("%s-%d%s", stem, i, ext)
		}
		f, err := s.root.OpenFile(path.Join(dir, candidate), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			return f, candidate, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, "", err
		}
	}
	return nil, "", badRequest("too many files named %q", name)
}

// safeName makes a name a browser (or anyone) sent safe to create in a
// case's inputs directory: no directory part, in either separator style;
// only letters, digits and marks of any script plus '.', '_', '-' and
// '+' (anything else, controls and bidi overrides included, becomes '_');
// no leading dot, so no hidden file, "." or ".."; no leading '-', so no
// name a shell would read as an option; at most maxNameBytes bytes,
// keeping a short extension. The case's directory is an os.Root as
// well, so even a name that slipped through could not leave it.
func safeName(sent string) string {
	if i := strings.LastIndexAny(sent, `/\`); i >= 0 {
		sent = sent[i+1:]
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(sent, "_") {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || strings.ContainsRune("._-+", r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := strings.TrimLeft(b.String(), ".-+")
	if len(name) > maxNameBytes {
		ext := path.Ext(name)
		if len(ext) > 16 {
			ext = ""
		}
		cut := maxNameBytes - len(ext)
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut] + ext
	}
	if strings.Trim(name, "_") == "" {
		return "upload"
	}
	return name
}

// formatBytes writes a byte count for people: 512 B, 1.5 MiB, 4 GiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	value, exp := float64(n)/unit, 0
	for value >= unit && exp < 4 {
		value /= unit
		exp++
	}
	s := fmt.Sprintf("%.1f", value)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + [...]string{"KiB", "MiB", "GiB", "TiB", "PiB"}[exp]
}
