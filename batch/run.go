package batch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"wiremortem/analysis"
	"wiremortem/internal/memguard"
	"wiremortem/rules"
)

// Options controls a sweep.
type Options struct {
	// Out is the output directory: one sub-directory per group, plus the
	// index.
	Out string
	// Shard and Shards select this worker's share (1-based Shard of
	// Shards); Shards <= 1 takes every group.
	Shard, Shards int
	// Jobs is how many groups are analysed at once (default 1).
	Jobs int
	// Analysis is passed to every group's analysis.
	Analysis analysis.Options
	// RenderHTML, if set, writes a group's HTML report.
	RenderHTML func(w io.Writer, res *analysis.Result) error
	// Log receives one line per group as it is done (may be nil).
	Log func(format string, args ...any)
}

// Entry is one group's line in index.jsonl (and its summary.json).
type Entry struct {
	Group string `json:"group"`
	// Status is "analysed", "unchanged" (skipped: same inputs and tool
	// version as the previous run), "partial" (stopped by Ctrl-C or the
	// memory limit before the captures' ends; Error says which; analysed
	// again by the next run) or "failed".
	Status      string        `json:"status"`
	Error       string        `json:"error,omitempty"`
	ToolVersion string        `json:"tool_version"`
	Inputs      []InputDigest `json:"inputs"`
	// InputErrors lists damaged inputs that were read up to the damage.
	InputErrors   []string       `json:"input_errors,omitempty"`
	Conversations int            `json:"conversations"`
	Incidents     map[string]int `json:"incidents_by_severity"`
	// WorstSeverity is the most severe incident's, "" when none.
	WorstSeverity string    `json:"worst_severity"`
	Rules         []string  `json:"rules"`
	Start         time.Time `json:"start,omitempty"`
	End           time.Time `json:"end,omitempty"`
	// Report and JSON are paths relative to the output directory.
	Report string `json:"report,omitempty"`
	JSON   string `json:"json"`
}

// InputDigest identifies an input by content.
type InputDigest struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

const summaryName = "summary.json"

// Run analyses the groups of this shard and returns their entries, sorted
// by group name.
func Run(ctx context.Context, groups []Group, opts Options) ([]Entry, error) {
	if opts.Out == "" {
		return nil, errors.New("batch: no output directory")
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, err
	}
	var mine []Group
	for _, g := range groups {
		if InShard(g.Name, opts.Shard, opts.Shards) {
			mine = append(mine, g)
		}
	}
	jobs := max(opts.Jobs, 1)
	entries := make([]Entry, len(mine))
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < jobs; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				entries[i] = runGroup(ctx, mine[i], opts)
				if opts.Log != nil {
					e := entries[i]
					opts.Log("%s: %s, %d conversations, worst incident %q%s", e.Group, e.Status, e.Conversations, e.WorstSeverity, errSuffix(e.Error))
				}
			}
		}()
	}
	for i := range mine {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	return entries, ctx.Err()
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return ": " + e
}

// runGroup analyses one group unless its inputs are unchanged since the
// last run.
func runGroup(ctx context.Context, g Group, opts Options) Entry {
	dir := filepath.Join(opts.Out, g.Name)
	e := Entry{Group: g.Name, ToolVersion: analysis.Version, Incidents: map[string]int{}, Rules: []string{}, JSON: filepath.Join(g.Name, "report.json")}
	for _, p := range append(append([]string{}, g.Captures...), g.Logs...) {
		d, err := digest(p)
		if err != nil {
			e.Status, e.Error = "failed", err.Error()
			return e
		}
		e.Inputs = append(e.Inputs, d)
	}
	if prev, ok := readSummary(dir); ok && (prev.Status == "analysed" || prev.Status == "unchanged") && prev.ToolVersion == e.ToolVersion && sameInputs(prev.Inputs, e.Inputs) {
		prev.Status = "unchanged"
		return prev
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.Status, e.Error = "failed", err.Error()
		return e
	}
	var inputs []analysis.Input
	for _, c := range g.Captures {
		inputs = append(inputs, analysis.Input{Path: c, Kind: analysis.KindCapture})
	}
	for _, l := range g.Logs {
		inputs = append(inputs, analysis.Input{Path: l})
	}
	// Groups share the process's memory: when what this one keeps nears
	// the limit it stops, marked partial, and the next group starts once
	// it has let go.
	ctx, unwatch := memguard.Watch(ctx)
	res, err := analysis.Run(ctx, inputs, opts.Analysis)
	unwatch()
	if err != nil {
		e.Status, e.Error = "failed", err.Error()
		writeSummary(dir, e)
		return e
	}
	defer res.Close()
	doc := res.Document
	for _, ie := range res.InputErrors {
		e.InputErrors = append(e.InputErrors, ie.Error())
	}
	if doc.Summary.Packets.Packets == 0 && len(res.InputErrors) > 0 {
		// Nothing could be read at all: the group failed.
		e.Status, e.Error = "failed", res.InputErrors[0].Error()
	} else if doc.Summary.Partial {
		// Run again next time, not skipped as unchanged.
		e.Status, e.Error = "partial", doc.Summary.PartialReason
	} else {
		e.Status = "analysed"
	}
	e.Conversations = doc.Summary.Conversations
	e.Start, e.End = doc.Summary.Start, doc.Summary.End
	worst := rules.Severity(-1)
	seen := map[string]bool{}
	for _, inc := range doc.Incidents {
		e.Incidents[inc.Severity.String()]++
		if inc.Severity > worst {
			worst = inc.Severity
		}
		if !seen[inc.Rule] {
			seen[inc.Rule] = true
			e.Rules = append(e.Rules, inc.Rule)
		}
	}
	sort.Strings(e.Rules)
	if worst >= 0 {
		e.WorstSeverity = worst.String()
	}
	if err := writeFile(filepath.Join(opts.Out, e.JSON), res.WriteJSON); err != nil {
		e.Status, e.Error = "failed", err.Error()
	}
	if opts.RenderHTML != nil && e.Status != "failed" {
		e.Report = filepath.Join(g.Name, "report.html")
		if err := writeFile(filepath.Join(opts.Out, e.Report), func(w io.Writer) error { return opts.RenderHTML(w, res) }); err != nil {
			e.Status, e.Error = "failed", err.Error()
		}
	}
	writeSummary(dir, e)
	return e
}

func writeFile(path string, write func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func writeSummary(dir string, e Entry) {
	writeFile(filepath.Join(dir, summaryName), func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(e)
	})
}

func readSummary(dir string) (Entry, bool) {
	b, err := os.ReadFile(filepath.Join(dir, summaryName))
	if err != nil {
		return Entry{}, false
	}
	var e Entry
	if json.Unmarshal(b, &e) != nil {
		return Entry{}, false
	}
	return e, true
}

func sameInputs(a, b []InputDigest) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func digest(path string) (InputDigest, error) {
	f, err := os.Open(path)
	if err != nil {
		return InputDigest{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return InputDigest{}, fmt.Errorf("%s: %v", path, err)
	}
	return InputDigest{Path: path, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// Merge reads every group's summary under out (written by one run or by
// several shards) and returns the entries sorted by group name.
func Merge(out string) ([]Entry, error) {
	dirs, err := os.ReadDir(out)
	if err != nil {
		return nil, err
	}
	var entries []Entry
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		if e, ok := readSummary(filepath.Join(out, d.Name())); ok {
			entries = append(entries, e)
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Group < entries[j].Group })
	return entries, nil
}

// WriteIndexJSONL writes one JSON line per entry.
func WriteIndexJSONL(w io.Writer, entries []Entry) error {
	enc := json.NewEncoder(w)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}

// AtOrAbove reports whether any entry has an incident at or above sev.
func AtOrAbove(entries []Entry, sev rules.Severity) bool {
	for _, e := range entries {
		if e.WorstSeverity == "" {
			continue
		}
		if s, err := rules.ParseSeverity(e.WorstSeverity); err == nil && s >= sev {
			return true
		}
	}
	return false
}
