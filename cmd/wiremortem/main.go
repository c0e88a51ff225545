// Command wiremortem analyses packet captures and the logs beside them and
// labels what went wrong in each TCP conversation.
//
// This file holds flags, exit codes and wiring only; the work is in the
// analysis, rules and htmlreport packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"wiremortem/analysis"
	"wiremortem/batch"
	"wiremortem/htmlreport"
	"wiremortem/internal/memguard"
	"wiremortem/rules"

	// --tz names zones (Asia/Shanghai) on machines and containers
	// without a zone database too.
	_ "time/tzdata"
)

// Exit codes.
const (
	exitOK         = 0
	exitIncidents  = 1 // --fail-on matched
	exitUsage      = 2
	exitInputError = 3
	// exitMemory: the memory limit stopped the reading (see
	// internal/memguard); what was read is written, marked partial.
	exitMemory = 4
	// exitInterrupted: Ctrl-C stopped the reading; what was read is
	// written, marked partial (128 + SIGINT, as a shell reports it).
	exitInterrupted = 130
)

// runContext is the context of a command that reads captures: Ctrl-C
// stops it, and so does the memory limit when what the analysis keeps
// nears it (memguard.Watch), both with what was read still written.
func runContext() (context.Context, context.CancelFunc) {
	ctx, stopSignal := signal.NotifyContext(context.Background(), os.Interrupt)
	ctx, unwatch := memguard.Watch(ctx)
	return ctx, func() {
		unwatch()
		stopSignal()
	}
}

// version is set at build time with -ldflags "-X main.version=..."; without
// it the module version or VCS revision from the build info is used.
var version = ""

type command struct {
	name, args, summary string
	run                 func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"demo", "[-o FILE.html] [--json FILE]", "analyse the four seed incidents (embedded real captures and logs) and write their report", runDemo},
		{"analyze", "[flags] FILE...", "analyse captures and logs, print a verdict, write JSON and HTML reports", runAnalyze},
		{"flows", "[--json] CAPTURE...", "list every TCP conversation in captures", runFlows},
		{"batch", "[flags] DIR|GLOB...", "analyse archives of captures: one report per capture group, plus an index", runBatch},
		{"serve", "[--addr HOST:PORT] [--data DIR] [flags]", "a web page on this machine: upload captures and logs, get the report, keep the cases", runServe},
		{"rules", "[--fields] [--rules FILE] [--rule-config FILE] [--set rule.param=value]", "list the rules, their parameters and defaults", runRules},
		{"version", "", "print the version", runVersion},
		{"help", "[COMMAND]", "show help for a command", runHelp},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	analysis.Version = toolVersion()
	// A soft memory limit under the container's or the machine's: the
	// collector works harder near it instead of the kernel killing the
	// run (GOMEMLIMIT or AUTOMEMLIMIT=off to change it).
	memguard.SetLimit()
	if path := os.Getenv("WIREMORTEM_CPUPROFILE"); path != "" {
		// For performance work: a CPU profile of the whole command, read
		// with `go tool pprof`.
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	if path := os.Getenv("WIREMORTEM_MEMPROFILE"); path != "" {
		// Every allocation of the command, by size and by count
		// (`go tool pprof -sample_index=alloc_space`), and what is still
		// live at the end (inuse_space).
		runtime.MemProfileRate = 64 << 10
		defer func() {
			if f, err := os.Create(path); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	if args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "wiremortem: unknown command %q\n\n", analysis.Safe(args[0]))
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "wiremortem: offline forensics for TCP, HTTP-upgrade and WebSocket incidents")
	fmt.Fprintln(w, "\nUsage:\n  wiremortem COMMAND [flags] [args]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'wiremortem help COMMAND' for a command's flags.")
}

func toolVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}

// newFlagSet makes a subcommand's flag set that reports errors to stderr.
func newFlagSet(name, args string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: wiremortem %s %s\n\nFlags:\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags; it returns an exit code and false when the command
// must stop (help asked, or a usage error).
func parse(fs *pflag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK, false
		}
		// With ContinueOnError pflag reports nothing itself.
		fmt.Fprintf(fs.Output(), "wiremortem %s: %s\n", fs.Name(), analysis.Safe(err.Error()))
		fs.Usage()
		return exitUsage, false
	}
	return exitOK, true
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "", stderr)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	fmt.Fprintln(stdout, "wiremortem", toolVersion())
	return exitOK
}

func runHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] && c.name != "help" {
			return c.run([]string{"--help"}, stdout, stdout)
		}
	}
	fmt.Fprintf(stderr, "wiremortem: unknown command %q\n", analysis.Safe(args[0]))
	return exitUsage
}

func runFlows(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("flows", "[--json] CAPTURE...", stderr)
	asJSON := fs.Bool("json", false, "print the conversations as JSON (the analyze document's schema, see docs/json.md)")
	quiet := fs.BoolP("quiet", "q", false, "no progress bar on stderr")
	maxConversations := fs.Int("max-conversations", 1_000_000, "live conversations held at once; past it the least recently active is finished early (counted as evicted)")
	jobs := addJobsFlag(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "wiremortem flows: no capture files given")
		fs.Usage()
		return exitUsage
	}
	var inputs []analysis.Input
	for _, p := range fs.Args() {
		inputs = append(inputs, analysis.Input{Path: p, Kind: analysis.KindCapture})
	}
	ctx, stop := runContext()
	defer stop()
	opts := analysis.Options{NoDecode: true, TableOnly: !*asJSON, Shards: *jobs}
	opts.Tracker.MaxConversations = *maxConversations
	bar := newProgress(stderr, *quiet)
	opts.Progress = bar.update
	res, err := analysis.Run(ctx, inputs, opts)
	bar.done()
	if err != nil {
		fmt.Fprintln(stderr, "wiremortem flows:", analysis.Safe(err.Error()))
		return exitInputError
	}
	defer res.Close()
	if *asJSON {
		err = res.WriteJSON(stdout)
	} else {
		err = res.WriteFlowTable(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "wiremortem flows:", err)
		return exitInputError
	}
	return reportInputErrors(res, stderr)
}

func runAnalyze(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("analyze", "[flags] FILE...", stderr)
	jsonOut := fs.String("json", "", "write the full JSON document to `FILE` (- for standard output)")
	htmlOut := fs.StringP("output", "o", "", "write the HTML report, one self-contained page, to `FILE` (- for standard output)")
	failOn := fs.String("fail-on", "", "exit 1 when an incident of this `severity` or worse is found (info, low, medium, high, critical)")
	quiet := fs.BoolP("quiet", "q", false, "no progress bar on stderr")
	explain := fs.Bool("explain", false, "after the verdict, print each incident in full: likely causes, what to check next, the evidence, and what the conversations it cites said (requests, WebSocket messages, closes, traced calls), for a terminal with no browser")
	jobs := addJobsFlag(fs)
	src := addSourceFlags(fs)
	rf := addRuleFlags(fs)
	lf := addLimitFlags(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	threshold, err := parseFailOn(*failOn)
	if err != nil {
		fmt.Fprintln(stderr, "wiremortem analyze:", err)
		return exitUsage
	}
	opts, forced, err := src.options()
	if err != nil {
		fmt.Fprintln(stderr, "wiremortem analyze:", analysis.Safe(err.Error()))
		return exitUsage
	}
	if opts.Rules, err = rf.config(); err != nil {
		fmt.Fprintln(stderr, "wiremortem analyze:", analysis.Safe(err.Error()))
		return exitUsage
	}
	lf.apply(fs, &opts)
	if *jsonOut == "-" && *htmlOut == "-" {
		fmt.Fprintln(stderr, "wiremortem analyze: --json and -o cannot both write to standard output")
		return exitUsage
	}
	paths, err := expandInputs(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "wiremortem analyze:", analysis.Safe(err.Error()))
		return exitInputError
	}
	var inputs []analysis.Input
	for _, p := range paths {
		inputs = append(inputs, analysis.Input{Path: p})
	}
	inputs = append(inputs, forced...)
	if len(inputs) == 0 {
		fmt.Fprintln(stderr, "wiremortem analyze: no input files given")
		fs.Usage()
		return exitUsage
	}
	ctx, stop := runContext()
	defer stop()
	opts.CommandLine = append([]string{"wiremortem", "analyze"}, args...)
	// Without --json nothing reads the conversations' JSON: not encoding
	// it is most of the cost of a conversation that says little.
	opts.NoConversationJSON = *jsonOut == ""
	opts.NoCaptureHashes = *jsonOut == "" && *htmlOut == ""
	opts.Shards = *jobs
	bar := newProgress(stderr, *quiet)
	opts.Progress = bar.update
	res, err := analysis.Run(ctx, inputs, opts)
	bar.done()
	if err != nil {
		fmt.Fprintln(stderr, "wiremortem analyze:", analysis.Safe(err.Error()))
		return exitInputError
	}
	defer res.Close()
	if *jsonOut != "" {
		if err := writeOutput(*jsonOut, stdout, res.WriteJSON); err != nil {
			fmt.Fprintln(stderr, "wiremortem analyze:", err)
			return exitInputError
		}
	}
	if *htmlOut != "" {
		if err := writeOutput(*htmlOut, stdout, func(w io.Writer) error { return renderHTML(w, res) }); err != nil {
			fmt.Fprintln(stderr, "wiremortem analyze:", err)
			return exitInputError
		}
	}
	if *jsonOut != "-" && *htmlOut != "-" {
		analysis.WriteVerdict(stdout, res.Document)
		if *explain {
			analysis.WriteExplanation(stdout, res.Document)
		}
	}
	code := reportInputErrors(res, stderr)
	if code == exitOK && threshold >= 0 {
		for _, inc := range res.Document.Incidents {
			if inc.Severity >= threshold {
				return exitIncidents
			}
		}
	}
	return code
}

func runBatch(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("batch", "[flags] DIR|GLOB...", stderr)
	out := fs.String("out", "wiremortem-batch", "output `directory`: one sub-directory per group, index.html and index.jsonl")
	shard := fs.String("shard", "", "take only shard `K/N` of the groups (stable by group name), for N workers sharing one output directory")
	merge := fs.Bool("merge", false, "only build index.html and index.jsonl from the groups already in --out (after sharded runs)")
	jobs := fs.IntP("jobs", "j", runtime.GOMAXPROCS(0), "groups analysed at once")
	failOn := fs.String("fail-on", "", "exit 1 when a group has an incident of this `severity` or worse (info, low, medium, high, critical)")
	quiet := fs.BoolP("quiet", "q", false, "no progress lines on stderr")
	lf := addLimitFlags(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	threshold, err := parseFailOn(*failOn)
	if err != nil {
		fmt.Fprintln(stderr, "wiremortem batch:", err)
		return exitUsage
	}
	opts := batch.Options{Out: *out, Jobs: *jobs, RenderHTML: renderHTML}
	opts.Analysis.Rules, _ = rules.NewConfig()
	lf.apply(fs, &opts.Analysis)
	if *shard != "" {
		if _, err := fmt.Sscanf(*shard, "%d/%d", &opts.Shard, &opts.Shards); err != nil || opts.Shard < 1 || opts.Shard > opts.Shards {
			fmt.Fprintf(stderr, "wiremortem batch: --shard %q: want K/N with 1 <= K <= N\n", analysis.Safe(*shard))
			return exitUsage
		}
	}
	if !*quiet {
		opts.Log = func(format string, a ...any) { fmt.Fprintln(stderr, analysis.Safe(fmt.Sprintf(format, a...))) }
	}
	if !*merge {
		if fs.NArg() == 0 {
			fmt.Fprintln(stderr, "wiremortem batch: no directory or pattern given")
			fs.Usage()
			return exitUsage
		}
		groups, unpaired, err := batch.Discover(fs.Args())
		if err != nil {
			fmt.Fprintln(stderr, "wiremortem batch:", analysis.Safe(err.Error()))
			return exitInputError
		}
		for _, u := range unpaired {
			fmt.Fprintln(stderr, "wiremortem batch: not a capture or a known log, or no capture to pair it with:", analysis.Safe(u))
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		if _, err := batch.Run(ctx, groups, opts); err != nil {
			fmt.Fprintln(stderr, "wiremortem batch:", err)
		}
		if opts.Shards > 1 {
			// Shards share the output directory; the index is built once
			// they are all done, with --merge.
			return exitOK
		}
	}
	entries, err := batch.Merge(*out)
	if err != nil {
		fmt.Fprintln(stderr, "wiremortem batch:", err)
		return exitInputError
	}
	if err := writeIndex(*out, entries); err != nil {
		fmt.Fprintln(stderr, "wiremortem batch:", err)
		return exitInputError
	}
	fmt.Fprintf(stdout, "%d groups; index written to %s\n", len(entries), filepath.Join(*out, "index.html"))
	if threshold >= 0 && batch.AtOrAbove(entries, threshold) {
		return exitIncidents
	}
	return exitOK
}

func writeIndex(out string, entries []batch.Entry) error {
	f, err := os.Create(filepath.Join(out, "index.jsonl"))
	if err != nil {
		return err
	}
	if err := batch.WriteIndexJSONL(f, entries); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	h, err := os.Create(filepath.Join(out, "index.html"))
	if err != nil {
		return err
	}
	if err := htmlreport.WriteBatchIndex(h, htmlreport.NewBatchIndex(entries)); err != nil {
		h.Close()
		return err
	}
	return h.Close()
}

// renderHTML writes the HTML report of an analysis.
func renderHTML(w io.Writer, res *analysis.Result) error {
	return htmlreport.Write(w, res.Document, htmlreport.Options{})
}

// addJobsFlag adds -j: how many goroutines follow conversations. The
// output is the same for any number (analysis.Options.Shards).
func addJobsFlag(fs *pflag.FlagSet) *int {
	return fs.IntP("jobs", "j", runtime.GOMAXPROCS(0), "goroutines that follow conversations, packets shared among them by 4-tuple (the output is the same for any number; 1 for the least memory)")
}

// parseFailOn reads --fail-on; -1 means not set.
func parseFailOn(s string) (rules.Severity, error) {
	if s == "" {
		return -1, nil
	}
	return rules.ParseSeverity(s)
}

func runRules(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("rules", "[--fields] [--rules FILE] [--rule-config FILE] [--set rule.param=value]", stderr)
	fields := fs.Bool("fields", false, "print the fields user-defined rules can use in their expressions")
	rf := addRuleFlags(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wiremortem rules: unexpected argument %q\n", analysis.Safe(fs.Arg(0)))
		fs.Usage()
		return exitUsage
	}
	var err error
	if *fields {
		err = rules.WriteFieldReference(stdout)
	} else {
		var cfg *rules.Config
		if cfg, err = rf.config(); err != nil {
			fmt.Fprintln(stderr, "wiremortem rules:", analysis.Safe(err.Error()))
			return exitUsage
		}
		err = rules.WriteCatalog(stdout, cfg)
	}
	if err != nil {
		fmt.Fprintln(stderr, "wiremortem rules:", err)
		return exitInputError
	}
	return exitOK
}

// ruleFlags are the flags that choose and tune the rules.
type ruleFlags struct {
	userRules, configs, sets []string
}

func addRuleFlags(fs *pflag.FlagSet) *ruleFlags {
	rf := &ruleFlags{}
	fs.StringArrayVar(&rf.userRules, "rules", nil, "add user-defined rules from `FILE` (YAML, see docs/rules.md); repeatable")
	fs.StringArrayVar(&rf.configs, "rule-config", nil, "change thresholds or disable rules from `FILE` (YAML, or TOML when it ends in .toml); repeatable")
	fs.StringArrayVar(&rf.sets, "set", nil, "change one threshold, `rule.param=value` (rule.enabled=false disables a rule); repeatable, applied after --rule-config")
	return rf
}

// config builds the rule configuration: user rules, then config files,
// then --set flags, so a --set wins over a file.
func (rf *ruleFlags) config() (*rules.Config, error) {
	var user []*rules.Rule
	for _, path := range rf.userRules {
		r, err := rules.LoadRules(path)
		if err != nil {
			return nil, err
		}
		user = append(user, r...)
	}
	cfg, err := rules.NewConfig(user...)
	if err != nil {
		return nil, err
	}
	for _, path := range rf.configs {
		if err := rules.LoadConfig(cfg, path); err != nil {
			return nil, err
		}
	}
	for _, s := range rf.sets {
		if err := rules.ParseSet(cfg, s); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// reportInputErrors prints one line per damaged or unreadable input and
// returns the exit code they call for.
func reportInputErrors(res *analysis.Result, stderr io.Writer) int {
	failed := map[string]bool{}
	for _, e := range res.InputErrors {
		fmt.Fprintln(stderr, "wiremortem:", analysis.Safe(e.Error()))
		failed[e.Path] = true
	}
	// The other warnings (lines not understood, caps hit, interleaved
	// captures, rules that failed) are in the JSON and the report; the
	// first few are said here too, so nothing is lost silently.
	shown := 0
	for _, w := range res.Document.Warnings {
		if failed[w.Source] {
			continue
		}
		if shown == maxWarningLines {
			fmt.Fprintf(stderr, "wiremortem: warning: %d more warnings in the JSON and the report\n", countWarnings(res, failed)-shown)
			break
		}
		fmt.Fprintln(stderr, "wiremortem: warning:", analysis.Safe(w.Source+": "+w.Message))
		shown++
	}
	if res.Document.Summary.Partial {
		var full *memguard.Exceeded
		if errors.As(res.StoppedBy(), &full) {
			fmt.Fprintln(stderr, "wiremortem:", full.Error()+"; the output covers what was read until then, and says so (partial)")
			return exitMemory
		}
		fmt.Fprintln(stderr, "wiremortem: interrupted: the output covers what was read until then, and says so (partial)")
		return exitInterrupted
	}
	if len(res.InputErrors) > 0 {
		return exitInputError
	}
	return exitOK
}

// maxWarningLines caps the warnings printed on stderr.
const maxWarningLines = 10

func countWarnings(res *analysis.Result, failed map[string]bool) int {
	n := 0
	for _, w := range res.Document.Warnings {
		if !failed[w.Source] {
			n++
		}
	}
	return n
}

// expandInputs turns directories into the files under them (sorted,
// hidden files skipped) and expands glob patterns the shell left alone.
func expandInputs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if strings.ContainsAny(a, "*?[") {
			if _, err := os.Stat(a); err != nil {
				m, err := filepath.Glob(a)
				if err != nil {
					return nil, fmt.Errorf("bad pattern %q: %v", a, err)
				}
				if len(m) == 0 {
					return nil, fmt.Errorf("%s: no file matches", a)
				}
				out = append(out, m...)
				continue
			}
		}
		st, err := os.Stat(a)
		if err != nil || !st.IsDir() {
			out = append(out, a)
			continue
		}
		var files []string
		filepath.WalkDir(a, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") && p != a {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: directory holds no files", a)
		}
		sort.Strings(files)
		out = append(out, files...)
	}
	return out, nil
}

// writeOutput writes to the file at path, or to stdout when path is "-".
func writeOutput(path string, stdout io.Writer, write func(io.Writer) error) error {
	if path == "-" {
		return write(stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
