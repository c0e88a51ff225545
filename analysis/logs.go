package analysis

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"wiremortem/decoders/logline"
	"wiremortem/decoders/nginx"
	"wiremortem/decoders/sockstat"
)

// Logs holds every log record read, on the log's own clock until the
// correlation puts them on the capture's.
type Logs struct {
	Access    []nginx.AccessRecord
	Errors    []nginx.ErrorRecord
	Snapshots []sockstat.Snapshot
}

// ClockOptions are what a person tells wiremortem about the logs' clocks.
// Sources are named by path, base name or kind ("nginx-error", "strace").
type ClockOptions struct {
	// Zone is the zone of times written without one (nginx's error log,
	// strace -t/-tt, date lines in ss loops); UTC when nil.
	Zone *time.Location
	// Zones overrides Zone per source.
	Zones map[string]*time.Location
	// Offsets are known skews to add to a source's times.
	Offsets map[string]time.Duration
	// Date is the day of time-of-day sources (strace -t/-tt); the
	// capture's first day when zero.
	Date time.Time
}

// zoneFor returns the zone for a source and says where it came from.
func (c ClockOptions) zoneFor(path string, kind Kind) (*time.Location, string) {
	for _, key := range []string{path, filepath.Base(path), string(kind)} {
		if z, ok := c.Zones[key]; ok {
			return z, "given for " + key
		}
	}
	if c.Zone != nil {
		return c.Zone, "given"
	}
	return time.UTC, "assumed (no --tz given)"
}

func (c ClockOptions) offsetFor(path string, kind Kind) (time.Duration, bool) {
	for _, key := range []string{path, filepath.Base(path), string(kind)} {
		if d, ok := c.Offsets[key]; ok {
			return d, true
		}
	}
	return 0, false
}

// maxUnparsedExamples caps the unparsed lines kept per source.
const maxUnparsedExamples = 5

// MaxLogRecords caps the records kept per log file; the rest are counted.
const MaxLogRecords = 2_000_000

// sniffKinds tells a log's kind from its first lines: the highest score
// over 0.5 wins.
func sniffLog(sample [][]byte) (Kind, float64) {
	best, score := Kind(""), 0.5
	for _, c := range []struct {
		kind  Kind
		score float64
	}{
		{KindNginxAccess, nginx.SniffAccess(sample)},
		{KindNginxError, nginx.SniffError(sample)},
		{KindSockstat, max(sockstat.SniffSS(sample), sockstat.SniffNetstat(sample), sockstat.SniffCounters(sample))},
	} {
		if c.score > score {
			best, score = c.kind, c.score
		}
	}
	return best, score
}

// sampleLines returns up to n non-empty lines from the head of a file.
func sampleLines(head []byte, n int) [][]byte {
	var out [][]byte
	for len(head) > 0 && len(out) < n {
		line, rest, found := bytes.Cut(head, []byte("\n"))
		if !found && len(rest) == 0 && len(head) == 64<<10 {
			break // a cut line at the end of the sample
		}
		head = rest
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) > 0 {
			out = append(out, line)
		}
	}
	return out
}

// readLog reads one log file of a known kind into logs, filling the input's
// description.
func readLog(path string, kind Kind, opts Options, logs *Logs, f *InputFile) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return err
	}
	h := sha256.New()
	r := io.TeeReader(bufio.NewReaderSize(file, 256<<10), h)
	zone, how := opts.Clock.zoneFor(path, kind)
	f.Size = st.Size()
	f.Clock = &ClockAssumption{Zone: zone.String(), ZoneSource: how}
	lopts := logline.Options{Source: path, Clock: zone}
	note := func(u *logline.Unparsed) {
		f.Unparsed++
		if len(f.UnparsedExamples) < maxUnparsedExamples {
			f.UnparsedExamples = append(f.UnparsedExamples, *u)
		}
	}
	span := func(t time.Time) {
		if t.IsZero() {
			return
		}
		t = t.UTC()
		if f.First.IsZero() || t.Before(f.First) {
			f.First = t
		}
		if t.After(f.Last) {
			f.Last = t
		}
	}
	var tally logline.Tally
	switch kind {
	case KindNginxAccess:
		format, err := accessFormat(path, opts.NginxLogFormat)
		if err != nil {
			return err
		}
		f.Format = format.name
		s := nginx.NewAccessScanner(r, format.format, lopts)
		for s.Scan() {
			if rec := s.Record(); rec != nil {
				span(rec.Time)
				if len(logs.Access) < MaxLogRecords {
					logs.Access = append(logs.Access, *rec)
				} else {
					f.Dropped++
				}
			} else {
				note(s.Unparsed())
			}
		}
		if err := s.Err(); err != nil {
			return err
		}
		tally = s.Tally()
		f.Clock.ZoneSource = "in the log"
	case KindNginxError:
		s := nginx.NewErrorScanner(r, lopts)
		for s.Scan() {
			if rec := s.Record(); rec != nil {
				span(rec.Time)
				if len(logs.Errors) < MaxLogRecords {
					logs.Errors = append(logs.Errors, *rec)
				} else {
					f.Dropped++
				}
			} else {
				note(s.Unparsed())
			}
		}
		if err := s.Err(); err != nil {
			return err
		}
		tally = s.Tally()
	case KindSockstat:
		s := sockstat.NewScanner(r, lopts)
		for s.Scan() {
			if snap := s.Snapshot(); snap != nil {
				span(snap.Time)
				if len(logs.Snapshots) < MaxLogRecords {
					logs.Snapshots = append(logs.Snapshots, *snap)
				} else {
					f.Dropped++
				}
			} else {
				note(s.Unparsed())
			}
		}
		if err := s.Err(); err != nil {
			return err
		}
		tally = s.Tally()
	default:
		return fmt.Errorf("%s files are not supported yet", kind)
	}
	io.Copy(h, file) // whatever a reader left unread
	f.SHA256 = hex.EncodeToString(h.Sum(nil))
	f.Records = tally.Lines
	if d, ok := opts.Clock.offsetFor(path, kind); ok {
		f.Clock.GivenOffset = d
	}
	return nil
}

type namedFormat struct {
	name   string
	format *nginx.AccessFormat
}

// accessFormat returns the log_format to read an access log with: the one
// given, or the built-in format that parses most of the file's first lines.
func accessFormat(path, given string) (namedFormat, error) {
	if given != "" {
		f, err := nginx.ParseFormat(given)
		if err != nil {
			return namedFormat{}, fmt.Errorf("--nginx-log-format: %w", err)
		}
		return namedFormat{given, f}, nil
	}
	head, err := readHead(path)
	if err != nil {
		return namedFormat{}, err
	}
	sample := sampleLines(head, 50)
	best, bestParsed := namedFormat{}, -1
	for _, name := range nginx.NamedFormats() {
		f, err := nginx.ParseFormat(name)
		if err != nil {
			continue
		}
		parsed := 0
		for _, l := range sample {
			if _, err := f.Parse(string(l)); err == nil {
				parsed++
			}
		}
		if parsed > bestParsed {
			best, bestParsed = namedFormat{name, f}, parsed
		}
	}
	return best, nil
}

func readHead(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	return buf[:n], nil
}
