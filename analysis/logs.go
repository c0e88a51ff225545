package analysis

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"wiremortem/correlate"
	"wiremortem/decoders/logline"
	"wiremortem/decoders/nginx"
	"wiremortem/decoders/sockstat"
	"wiremortem/decoders/strace"
)

// Logs holds every log record read, on the log's own clock until the
// correlation puts them on the capture's.
type Logs struct {
	Access    []correlate.AccessFile
	Errors    []correlate.ErrorFile
	Snapshots []correlate.SnapshotFile
	Straces   []correlate.StraceFile
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
	return time.UTC, zoneAssumed
}

// zoneAssumed is the zone source of a log no --tz spoke of.
const zoneAssumed = "assumed (no --tz given)"

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
		{KindStrace, strace.Sniff(sample)},
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
// description; an access log reads with the given log_format, or the one of
// confFormats and the built-in formats that fits it best.
func readLog(path string, kind Kind, opts Options, confFormats []namedFormat, captureStart time.Time, logs *Logs, f *InputFile) error {
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
	lopts := logline.Options{Source: path, Clock: zone, MaxLineBytes: opts.MaxLogLineBytes}
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
	offset, offsetGiven := opts.Clock.offsetFor(path, kind)
	switch kind {
	case KindStrace:
		sopts := strace.Options{Options: lopts, PID: pidFromName(path)}
		sopts.Date = opts.Clock.Date
		f.Clock.DateSource = "given"
		if sopts.Date.IsZero() && !captureStart.IsZero() {
			sopts.Date = captureStart.In(zone)
			f.Clock.DateSource = "the capture's first day"
		}
		s := strace.NewScanner(r, sopts)
		res, err := s.Run()
		if err != nil {
			return err
		}
		tally = s.Tally()
		for i := range s.Unparsed() {
			note(&s.Unparsed()[i])
		}
		f.Unparsed = tally.Unparsed()
		if res.TimeFormat == "time-of-day" && !sopts.Date.IsZero() {
			f.Clock.Date = sopts.Date.Format("2006-01-02")
		} else {
			f.Clock.DateSource = ""
		}
		if res.TimeFormat == "epoch" {
			f.Clock.ZoneSource = "in the log (epoch times)"
		}
		if !res.TimesKnown {
			f.Clock.ZoneSource = "no usable times (" + res.TimeFormat + ")"
		}
		for _, l := range res.Lives {
			span(l.Opened.Time)
			if l.Closed != nil {
				span(l.Closed.Time)
			}
		}
		logs.Straces = append(logs.Straces, correlate.StraceFile{Path: path, Result: res, Offset: offset, OffsetGiven: offsetGiven})
	case KindNginxAccess:
		format, err := accessFormat(path, opts.NginxLogFormat, confFormats)
		if err != nil {
			return err
		}
		f.Format = format.name
		file := correlate.AccessFile{Path: path, Offset: offset, OffsetGiven: offsetGiven}
		defer func() { logs.Access = append(logs.Access, file) }()
		s := nginx.NewAccessScanner(r, format.format, lopts)
		for s.Scan() {
			if rec := s.Record(); rec != nil {
				span(rec.Time)
				if len(file.Records) < MaxLogRecords {
					file.Records = append(file.Records, *rec)
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
		file := correlate.ErrorFile{Path: path, Offset: offset, OffsetGiven: offsetGiven}
		defer func() { logs.Errors = append(logs.Errors, file) }()
		s := nginx.NewErrorScanner(r, lopts)
		for s.Scan() {
			if rec := s.Record(); rec != nil {
				span(rec.Time)
				if len(file.Records) < MaxLogRecords {
					file.Records = append(file.Records, *rec)
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
		file := correlate.SnapshotFile{Path: path, Offset: offset, OffsetGiven: offsetGiven}
		defer func() { logs.Snapshots = append(logs.Snapshots, file) }()
		s := sockstat.NewScanner(r, lopts)
		for s.Scan() {
			if snap := s.Snapshot(); snap != nil {
				span(snap.Time)
				if len(file.Snapshots) < MaxLogRecords {
					file.Snapshots = append(file.Snapshots, *snap)
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
	if offsetGiven {
		f.Clock.GivenOffset = offset
	}
	return nil
}

// pidFromName reads the pid strace -ff appends to its output files
// ("trace.1234"), 0 when there is none.
func pidFromName(path string) int {
	base := filepath.Base(path)
	i := strings.LastIndexByte(base, '.')
	if i < 0 || i == len(base)-1 {
		return 0
	}
	n, err := strconv.Atoi(base[i+1:])
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

type namedFormat struct {
	name   string
	format *nginx.AccessFormat
}

// accessFormat returns the log_format to read an access log with: the one
// given, or the one that parses most of the file's first lines, of the
// formats an nginx.conf among the inputs defines (first: they win a tie)
// and the built-in ones.
func accessFormat(path, given string, confFormats []namedFormat) (namedFormat, error) {
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
	candidates := slices.Clone(confFormats)
	for _, name := range nginx.NamedFormats() {
		if f, err := nginx.ParseFormat(name); err == nil {
			candidates = append(candidates, namedFormat{name, f})
		}
	}
	sample := sampleLines(head, 50)
	best, bestParsed := namedFormat{}, -1
	for _, c := range candidates {
		parsed := 0
		for _, l := range sample {
			if _, err := c.format.Parse(string(l)); err == nil {
				parsed++
			}
		}
		if parsed > bestParsed {
			best, bestParsed = c, parsed
		}
	}
	return best, nil
}

// maxNginxConfBytes caps the nginx.conf read for its log_format
// directives; nginx's own are a few KiB.
const maxNginxConfBytes = 1 << 20

// readNginxConf reads the log_format directives of an nginx
// configuration (include directives are not followed), named after the
// file ("lab (nginx.conf)"), in name order.
func readNginxConf(path string, f *InputFile) ([]namedFormat, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return nil, err
	}
	f.Size = st.Size()
	if st.Size() > maxNginxConfBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than an nginx.conf's %d: not read", path, st.Size(), maxNginxConfBytes)
	}
	b, err := io.ReadAll(file)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	f.SHA256 = hex.EncodeToString(sum[:])
	formats, err := nginx.ParseConfigFormats(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []namedFormat
	var names []string
	for _, name := range slices.Sorted(maps.Keys(formats)) {
		if name == nginx.DefaultFormatName {
			continue // built in, and added by ParseConfigFormats to every file
		}
		named := fmt.Sprintf("%s (%s)", name, filepath.Base(path))
		out = append(out, namedFormat{named, formats[name]})
		names = append(names, named)
	}
	f.Records, f.Format = int64(len(out)), strings.Join(names, ", ")
	return out, nil
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
