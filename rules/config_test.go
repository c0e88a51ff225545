package rules

import (
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name, file, content string
	}{
		{"yaml", "cfg.yaml", `# thresholds
limits:
  max_incidents: 50
rules:
  close-wait:
    min_age: 2500ms
    pileup: 3
  idle-timeout-teardown:
    timeouts: [60s, 75s]
    tolerance: 5%
  retransmission-storm:
    enabled: false
  syn-unanswered: {storm_attempts: 50}
`},
		{"toml", "cfg.toml", `# thresholds
[limits]
max_incidents = 50

[rules.close-wait]
min_age = "2500ms"
pileup = 3

[rules.idle-timeout-teardown]
timeouts = ["60s", "75s"]
tolerance = 0.05

[rules]
retransmission-storm.enabled = false
syn-unanswered = { storm_attempts = 50 }
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := NewConfig()
			if err := LoadConfig(cfg, writeFile(t, tt.file, tt.content)); err != nil {
				t.Fatal(err)
			}
			p := cfg.Params("close-wait")
			if p.Duration("min_age") != 2500*time.Millisecond || p.Count("pileup") != 3 {
				t.Errorf("close-wait: %v %v", p.Duration("min_age"), p.Count("pileup"))
			}
			idle := cfg.Params("idle-timeout-teardown")
			if d := idle.Durations("timeouts"); len(d) != 2 || d[1] != 75*time.Second || idle.Ratio("tolerance") != 0.05 {
				t.Errorf("idle: %v %v", d, idle.Ratio("tolerance"))
			}
			if cfg.Enabled("retransmission-storm") || !cfg.Enabled("close-wait") {
				t.Errorf("enabled flags wrong")
			}
			if cfg.Params("syn-unanswered").Count("storm_attempts") != 50 || cfg.Limits.MaxIncidents != 50 {
				t.Errorf("inline table or limits not applied")
			}
		})
	}
}

// TestConfigErrors: every mistake names the file, the line and the key.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, file, content, want string
	}{
		{"unknown rule", "c.yaml", "rules:\n  close-waits:\n    min_age: 2s\n", `:3: rules.close-waits.min_age: unknown rule "close-waits"`},
		{"unknown parameter", "c.yaml", "rules:\n  close-wait:\n    min_ag: 2s\n", `:3: rules.close-wait.min_ag: rule close-wait has no parameter "min_ag" (has min_age, pileup, enabled)`},
		{"bad duration", "c.yaml", "rules:\n  close-wait:\n\n    min_age: 2 secs\n", `:4: rules.close-wait.min_age: "2 secs" is not a duration (write 300ms, 2s, 1m30s); want a duration: 300ms, 2s, 1m30s`},
		{"duration without a unit", "c.yaml", "rules:\n  close-wait:\n    min_age: 2\n", `:3: rules.close-wait.min_age: 2 has no unit (write "2s" or "2ms")`},
		{"negative count", "c.yaml", "rules:\n  close-wait:\n    pileup: -1\n", `:3: rules.close-wait.pileup: -1 is negative`},
		{"ratio over 1", "c.yaml", "rules:\n  idle-timeout-teardown:\n    tolerance: 150%\n", `:3: rules.idle-timeout-teardown.tolerance: 150% is not between 0 and 1`},
		{"bad enabled", "c.yaml", "rules:\n  close-wait:\n    enabled: maybe\n", `:3: rules.close-wait.enabled: "maybe" is not true or false`},
		{"unknown section", "c.yaml", "rule:\n  close-wait:\n    min_age: 2s\n", `:3: rule.close-wait.min_age: unknown section "rule" (want rules or limits)`},
		{"unknown limit", "c.yaml", "limits:\n  max_incident: 5\n", `:2: limits.max_incident: unknown limit "max_incident" (have max_evidence_per_incident, max_flows_per_incident, max_incidents)`},
		{"zero limit", "c.yaml", "limits:\n  max_incidents: 0\n", `:2: limits.max_incidents: must be at least 1`},
		{"rule without a table", "c.yaml", "rules:\n  close-wait: 2s\n", `:2: rules.close-wait: want a table of parameters`},
		{"yaml syntax", "c.yaml", "rules:\n  close-wait:\n   - a\n  b: [\n", `:4: `},
		{"toml unknown parameter", "c.toml", "[rules.close-wait]\n\nmin_ag = \"2s\"\n", `:3: rules.close-wait.min_ag: rule close-wait has no parameter "min_ag"`},
		{"toml bad value", "c.toml", "[rules.zero-window-stall]\nmin_duration = \"soon\"\n", `:2: rules.zero-window-stall.min_duration: "soon" is not a duration`},
		{"toml syntax", "c.toml", "[rules.close-wait]\nmin_age = \n", `:2: `},
		{"toml duplicate key", "c.toml", "[rules.close-wait]\nmin_age = \"1s\"\nmin_age = \"2s\"\n", `:3: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := NewConfig()
			path := writeFile(t, tt.file, tt.content)
			err := LoadConfig(cfg, path)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), path+tt.want) {
				t.Errorf("error\n %q\nwant prefix\n %q", err, path+tt.want)
			}
		})
	}
}

func TestParseSet(t *testing.T) {
	tests := []struct {
		set, want string // want is "" for success
	}{
		{"close-wait.min_age=3s", ""},
		{"close-wait.enabled=false", ""},
		{"limits.max_flows_per_incident=5", ""},
		{"retransmission-storm.min_ratio=20%", ""},
		{"close-wait.pileup=  7 ", ""},
		{"close-wait", `--set "close-wait": want rule.param=value`},
		{"close-wait=2s", `--set "close-wait=2s": want rule.param=value`},
		{"close-wait.min_age=", `--set close-wait.min_age: "" is not a duration`},
		{"nope.x=1", `--set nope.x: unknown rule "nope"`},
		{"close-wait.x=1", `--set close-wait.x: rule close-wait has no parameter "x"`},
		{"syn-unanswered.storm_attempts=many", `--set syn-unanswered.storm_attempts: "many" is not a whole number`},
	}
	for _, tt := range tests {
		cfg, _ := NewConfig()
		err := ParseSet(cfg, tt.set)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.set, err)
		case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want %q", tt.set, err, tt.want)
		}
	}
	cfg, _ := NewConfig()
	for _, s := range []string{"close-wait.pileup=7", "limits.max_flows_per_incident=5", "retransmission-storm.min_ratio=20%"} {
		if err := ParseSet(cfg, s); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.Params("close-wait").Count("pileup") != 7 || cfg.Limits.MaxFlows != 5 || cfg.Params("retransmission-storm").Ratio("min_ratio") != 0.2 {
		t.Errorf("values not applied: %+v", cfg.Limits)
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		kind Kind
		raw  any
		want string // formatValue of the result, or "error"
	}{
		{KindDuration, "1m30s", "90s"},
		{KindDuration, "250ms", "250ms"},
		{KindDuration, int64(0), "0s"},
		{KindDuration, 1.5, "error"},
		{KindDuration, "-1s", "error"},
		{KindBytes, "64KiB", "64KiB"},
		{KindBytes, "1MB", "1000000"},
		{KindBytes, "1.5M", "1536KiB"},
		{KindBytes, int64(1500), "1500"},
		{KindBytes, "lots", "error"},
		{KindCount, "12", "12"},
		{KindCount, 3.0, "3"},
		{KindCount, 3.5, "error"},
		{KindRatio, "12.5%", "0.125"},
		{KindRatio, int64(1), "1"},
		{KindRatio, -0.1, "error"},
		{KindDurations, "[30s, 1m]", "[30s,60s]"},
		{KindDurations, []any{"75s", "60s"}, "[60s,75s]"},
		{KindDurations, "", "error"},
		{KindDurations, []any{"1s", int64(5)}, "error"},
	}
	for _, tt := range tests {
		v, err := Param{Name: "x", Kind: tt.kind}.parse(tt.raw)
		got := "error"
		if err == nil {
			got = formatValue(v)
		}
		if got != tt.want {
			t.Errorf("%s %v: got %s (%v), want %s", tt.kind, tt.raw, got, err, tt.want)
		}
	}
}
