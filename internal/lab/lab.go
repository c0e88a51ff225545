// Package lab produces wiremortem's real test corpus: each scenario drives
// real traffic through the Linux TCP stack on loopback (with real tcpdump,
// nginx, strace and ss), plants at most a few known faults, and writes the
// artifacts beside a facts.json that says what the lab knows for certain:
// the addresses it chose or read back with getsockname, the faults it
// planted, and the joins between log records and conversations.
//
// Scenarios need root (tcpdump on lo) and the tools they name. Each one
// owns a /24 of loopback addresses, 127.0.N.0/24, and captures only that
// net, so scenarios never see each other's traffic and may run at once.
package lab

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Scenario is one reproducible situation.
type Scenario struct {
	Name        string
	Description string
	// Seed is the postmortem the scenario reproduces ("000".."003").
	Seed string
	// TwinOf marks a healthy twin: traffic of that scenario's shape that
	// must fire no rule.
	TwinOf string
	// TimeZone the scenario's logs are written in; default UTC.
	TimeZone string
	// Net is the scenario's loopback /24: 127.0.Net.0/24.
	Net int
	// Tools the scenario runs, besides tcpdump.
	Tools []string

	run func(e *Env) error
}

// Scenarios returns every scenario, in the order the lab runs them.
func Scenarios() []Scenario { return slices.Clone(registry) }

// Lookup returns the scenario with the given name.
func Lookup(name string) (Scenario, bool) {
	i := slices.IndexFunc(registry, func(s Scenario) bool { return s.Name == name })
	if i < 0 {
		return Scenario{}, false
	}
	return registry[i], true
}

// Run regenerates one scenario into outDir/<name>/ (removing what was
// there), writes its facts.json and returns the facts.
func Run(ctx context.Context, name, outDir string) (Facts, error) {
	sc, ok := Lookup(name)
	if !ok {
		return Facts{}, fmt.Errorf("lab: no scenario %q", name)
	}
	for _, tool := range append([]string{"tcpdump"}, sc.Tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			return Facts{}, fmt.Errorf("lab: scenario %s needs %s: %w", name, tool, err)
		}
	}
	dir := filepath.Join(outDir, name)
	if err := os.RemoveAll(dir); err != nil {
		return Facts{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Facts{}, err
	}
	e := newEnv(ctx, sc, dir)
	runErr := sc.run(e)
	e.cleanup()
	if runErr != nil {
		return Facts{}, fmt.Errorf("lab: scenario %s: %w", name, runErr)
	}
	f := e.finish()
	if err := f.Check(dir); err != nil {
		return f, fmt.Errorf("lab: scenario %s: %w", name, err)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return f, err
	}
	return f, os.WriteFile(filepath.Join(dir, "facts.json"), append(b, '\n'), 0o644)
}

// Env is what a scenario's code works with: its directory, its addresses,
// the facts it records, and the processes it must stop.
type Env struct {
	ctx context.Context
	sc  Scenario
	dir string
	tz  *time.Location

	mu       sync.Mutex
	facts    Facts
	cleanups []func()
}

func newEnv(ctx context.Context, sc Scenario, dir string) *Env {
	zone := cmp.Or(sc.TimeZone, "UTC")
	tz, err := time.LoadLocation(zone)
	if err != nil {
		tz = time.UTC
		zone = "UTC"
	}
	start := time.Now().UTC()
	local := start.In(tz)
	return &Env{
		ctx: ctx,
		sc:  sc,
		dir: dir,
		tz:  tz,
		facts: Facts{
			Schema:      SchemaVersion,
			Scenario:    sc.Name,
			Description: sc.Description,
			Seed:        sc.Seed,
			HealthyTwin: sc.TwinOf != "",
			TwinOf:      sc.TwinOf,
			Host:        readHost(),
			Clock: Clock{
				TimeZone:  zone,
				UTCOffset: local.Format("-07:00"),
				Date:      local.Format("2006-01-02"),
				Start:     start,
			},
			Incidents: []Incident{},
		},
	}
}

// IP is the scenario's loopback address 127.0.Net.host.
func (e *Env) IP(host byte) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, byte(e.sc.Net), host})
}

// AddrPort is IP(host):port.
func (e *Env) AddrPort(host byte, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(e.IP(host), port)
}

// NetFilter is the BPF filter that keeps the scenario's own traffic.
func (e *Env) NetFilter() string { return fmt.Sprintf("tcp and net 127.0.%d.0/24", e.sc.Net) }

// Path is a file in the scenario directory.
func (e *Env) Path(name string) string { return filepath.Join(e.dir, name) }

// Environ is the environment for programs whose logs carry local time.
func (e *Env) Environ() []string { return append(os.Environ(), "TZ="+e.facts.Clock.TimeZone) }

// Local formats t in the scenario's zone.
func (e *Env) Local(t time.Time) time.Time { return t.In(e.tz) }

// Defer registers f to run when the scenario ends, in reverse order.
func (e *Env) Defer(f func()) {
	e.mu.Lock()
	e.cleanups = append(e.cleanups, f)
	e.mu.Unlock()
}

func (e *Env) cleanup() {
	e.mu.Lock()
	fs := e.cleanups
	e.cleanups = nil
	e.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// AddFile records an artifact. Paths in its command are made relative to
// the scenario directory, and the lab's own binary is called "lab", so
// that facts do not depend on where the lab ran.
func (e *Env) AddFile(f File) {
	exe, _ := os.Executable()
	f.Command = slices.Clone(f.Command)
	for i, arg := range f.Command {
		switch {
		case exe != "" && arg == exe:
			f.Command[i] = "lab"
		default:
			f.Command[i] = strings.ReplaceAll(arg, e.dir+string(filepath.Separator), "")
		}
	}
	e.mu.Lock()
	e.facts.Files = append(e.facts.Files, f)
	e.mu.Unlock()
}

// AddProcess records a process whose identity appears in logs.
func (e *Env) AddProcess(p Process) {
	e.mu.Lock()
	e.facts.Processes = append(e.facts.Processes, p)
	e.mu.Unlock()
}

// AddConversation records a conversation the lab made.
func (e *Env) AddConversation(c Conversation) {
	e.mu.Lock()
	e.facts.Conversations = append(e.facts.Conversations, c)
	e.mu.Unlock()
}

// Plant records a fault the lab planted on the given conversations; the
// incident's flows are those conversations' endpoints.
func (e *Env) Plant(rule, what string, params map[string]float64, conversations ...string) {
	e.mu.Lock()
	e.facts.Incidents = append(e.facts.Incidents, Incident{
		Rule:          rule,
		Conversations: conversations,
		What:          what,
		Params:        params,
	})
	e.mu.Unlock()
}

// PlantOptional records an incident an analyzer may report but need not
// (see Incident.Optional).
func (e *Env) PlantOptional(rule, what string, conversations ...string) {
	e.mu.Lock()
	e.facts.Incidents = append(e.facts.Incidents, Incident{Rule: rule, Conversations: conversations, What: what, Optional: true})
	e.mu.Unlock()
}

// AddStraceJoin records that a traced process's fd is a conversation.
func (e *Env) AddStraceJoin(j StraceJoin) {
	e.mu.Lock()
	e.facts.Joins.Strace = append(e.facts.Joins.Strace, j)
	e.mu.Unlock()
}

// AddNginxJoin records nginx's $connection of a conversation.
func (e *Env) AddNginxJoin(j NginxJoin) {
	e.mu.Lock()
	e.facts.Joins.Nginx = append(e.facts.Joins.Nginx, j)
	e.mu.Unlock()
}

// AddCounters records kernel counters read before and after the traffic.
func (e *Env) AddCounters(before, after map[string]int64, names ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range names {
		e.facts.Counters = append(e.facts.Counters, Counter{Name: n, Before: before[n], After: after[n]})
	}
}

// Note records a fact worth knowing that has no field of its own.
func (e *Env) Note(format string, args ...any) {
	e.mu.Lock()
	e.facts.Notes = append(e.facts.Notes, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

// finish completes the facts: incident flows, end time, and a stable order.
func (e *Env) finish() Facts {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.facts
	f.Clock.End = time.Now().UTC()
	slices.SortStableFunc(f.Conversations, func(a, b Conversation) int { return strings.Compare(a.ID, b.ID) })
	for i := range f.Incidents {
		in := &f.Incidents[i]
		in.Flows = nil
		for _, id := range in.Conversations {
			if c, ok := f.Conversation(id); ok {
				in.Flows = append(in.Flows, Flow{Client: c.Client, Server: c.Server})
			}
		}
	}
	slices.SortStableFunc(f.Joins.Strace, func(a, b StraceJoin) int {
		return cmp.Or(cmp.Compare(a.PID, b.PID), cmp.Compare(a.FD, b.FD), strings.Compare(a.Conversation, b.Conversation))
	})
	slices.SortStableFunc(f.Joins.Nginx, func(a, b NginxJoin) int { return cmp.Compare(a.Connection, b.Connection) })
	if f.Conversations == nil {
		f.Conversations = []Conversation{}
	}
	return f
}

// Check verifies the facts are self-consistent and name files that exist
// in dir: every conversation id is unique and has endpoints, every
// incident, join and file reference resolves.
func (f *Facts) Check(dir string) error {
	var errs []error
	files := map[string]bool{}
	for _, fl := range f.Files {
		if files[fl.Name] {
			errs = append(errs, fmt.Errorf("file %s listed twice", fl.Name))
		}
		files[fl.Name] = true
		if fl.Kind == "" {
			errs = append(errs, fmt.Errorf("file %s has no kind", fl.Name))
		}
		if _, err := os.Stat(filepath.Join(dir, fl.Name)); err != nil {
			errs = append(errs, err)
		}
	}
	ids := map[string]bool{}
	for _, c := range f.Conversations {
		if ids[c.ID] {
			errs = append(errs, fmt.Errorf("conversation %s listed twice", c.ID))
		}
		ids[c.ID] = true
		for _, ep := range []string{c.Client, c.Server} {
			if _, err := netip.ParseAddrPort(ep); err != nil {
				errs = append(errs, fmt.Errorf("conversation %s: %w", c.ID, err))
			}
		}
		if c.Handshake == "" {
			errs = append(errs, fmt.Errorf("conversation %s has no handshake outcome", c.ID))
		}
		for _, name := range c.Files {
			if !files[name] {
				errs = append(errs, fmt.Errorf("conversation %s names unknown file %s", c.ID, name))
			}
		}
	}
	for _, in := range f.Incidents {
		if len(in.Conversations) == 0 || len(in.Flows) != len(in.Conversations) {
			errs = append(errs, fmt.Errorf("incident %s: flows %d for conversations %v", in.Rule, len(in.Flows), in.Conversations))
		}
		for _, id := range in.Conversations {
			if !ids[id] {
				errs = append(errs, fmt.Errorf("incident %s names unknown conversation %s", in.Rule, id))
			}
		}
	}
	if f.HealthyTwin && len(f.Incidents) > 0 {
		errs = append(errs, fmt.Errorf("healthy twin with %d incidents", len(f.Incidents)))
	}
	for _, j := range f.Joins.Strace {
		if !ids[j.Conversation] || !files[j.File] {
			errs = append(errs, fmt.Errorf("strace join %s fd %d: unknown conversation %q or file %q", j.File, j.FD, j.Conversation, j.File))
		}
	}
	for _, j := range f.Joins.Nginx {
		if !ids[j.Conversation] {
			errs = append(errs, fmt.Errorf("nginx join *%d: unknown conversation %q", j.Connection, j.Conversation))
		}
		if j.UpstreamConversation != "" && !ids[j.UpstreamConversation] {
			errs = append(errs, fmt.Errorf("nginx join *%d: unknown upstream conversation %q", j.Connection, j.UpstreamConversation))
		}
	}
	return errors.Join(errs...)
}
