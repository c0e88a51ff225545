package rules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wiremortem/flows"
)

const slowHandshakeRules = `# user rules
rules:
  - id: slow-handshake
    title: Slow TCP handshake
    severity: medium
    thresholds:
      slow: 1s
    when: handshake.completed && handshake.wait > threshold.slow
    summary: "${client} waited ${handshake.wait} for ${server} to answer its SYN (${handshake.syns} SYNs)"
    causes:
      - "The accept queue or SYN backlog of ${server} is full."
    next:
      - "ss -lnt 'sport = :${server_port}' on ${server_ip}"
  - id: big-upload
    title: Large upload
    severity: info
    confidence: high
    thresholds:
      big: 1MiB
    when: from_client.payload_bytes >= threshold.big
    summary: "${client} sent ${from_client.payload_bytes} bytes"
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUserRules(t *testing.T) {
	user, err := LoadRules(writeFile(t, "rules.yaml", slowHandshakeRules))
	if err != nil {
		t.Fatal(err)
	}
	in := input(30*s,
		conv(1, "10.0.0.5:5000", "10.0.0.9:80").syn(0, 1*s).synack(2900*ms).ack(2901*ms).done(),
		conv(2, "10.0.0.6:5000", "10.0.0.9:80").handshake(0).data(flows.Client, 10*ms, 2<<20).done(),
	)
	tests := []struct {
		name string
		sets []string
		want []string
	}{
		{"defaults", nil, []string{
			"slow-handshake medium medium: 10.0.0.5:5000 waited 2.9 s for 10.0.0.9:80 to answer its SYN (2 SYNs)",
			"big-upload info high: 10.0.0.6:5000 sent 2097152 bytes",
		}},
		{"a threshold raised with --set", []string{"slow-handshake.slow=3s"}, []string{
			"big-upload info high: 10.0.0.6:5000 sent 2097152 bytes",
		}},
		{"a user rule disabled", []string{"big-upload.enabled=false"}, []string{
			"slow-handshake medium medium: 10.0.0.5:5000 waited 2.9 s for 10.0.0.9:80 to answer its SYN (2 SYNs)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := NewConfig(user...)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.sets {
				if err := ParseSet(cfg, s); err != nil {
					t.Fatal(err)
				}
			}
			res := Evaluate(in, cfg)
			var got []string
			for _, inc := range res.Incidents {
				if inc.Rule == "slow-handshake" || inc.Rule == "big-upload" {
					if len(inc.Flows) != 1 || len(inc.Evidence) < 2 || len(inc.Causes) != 1 || len(inc.Causes[0].Evidence) == 0 {
						t.Errorf("incomplete incident %+v", inc)
					}
					got = append(got, inc.Rule+" "+inc.Severity.String()+" "+inc.Confidence+": "+inc.Summary)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if len(res.Problems) > 0 {
				t.Errorf("problems: %+v", res.Problems)
			}
		})
	}
	cfg, _ := NewConfig(user...)
	for _, inc := range Evaluate(in, cfg).Incidents {
		if inc.Rule == "slow-handshake" && (inc.Causes[0].Text != "The accept queue or SYN backlog of 10.0.0.9:80 is full." || inc.Next[0] != "ss -lnt 'sport = :80' on 10.0.0.9") {
			t.Errorf("templates in causes and next: %q %q", inc.Causes[0].Text, inc.Next)
		}
	}
}

// TestUserRuleErrors checks that every mistake in a rules file is reported
// with the file, the line and the field.
func TestUserRuleErrors(t *testing.T) {
	rule := func(lines ...string) string {
		return "rules:\n  - id: my-rule\n    title: T\n    severity: low\n" + strings.Join(lines, "\n") + "\n"
	}
	base := []string{"    when: handshake.unanswered", "    summary: s"}
	tests := []struct {
		name, file, want string
	}{
		{"not a mapping", "- a\n", ":1: the file must be a mapping with a rules: list"},
		{"yaml syntax", "rules:\n  - id: [\n", ":2: did not find expected node content"},
		{"unknown top key", "rule:\n  - id: x\n", `:1: unknown key "rule" (want rules)`},
		{"unknown field", rule(append(base, "    wen: x")...), `:7: rule my-rule: wen: unknown field`},
		{"missing when", rule("    summary: s"), ":2: rule my-rule: when: missing"},
		{"bad severity", strings.Replace(rule(base...), "severity: low", "severity: urgent", 1), `:4: rule my-rule: severity: unknown severity "urgent"`},
		{"bad id", strings.Replace(rule(base...), "my-rule", "My_Rule", 1), `:2: rule at line 2: id: "My_Rule": use lower-case words`},
		{"built-in id", strings.Replace(rule(base...), "my-rule", "close-wait", 1), ":2: rule close-wait: a built-in rule has this id"},
		{"duplicate id", rule(base...) + strings.TrimPrefix(rule(base...), "rules:\n"), ":7: rule my-rule: id already used on line 2"},
		{"expression syntax", rule("    when: handshake.unanswered &&", "    summary: s"), ":5: rule my-rule: when: unexpected token EOF"},
		{"unknown field name", rule("    when: handshake.unanswerd", "    summary: s"), ":5: rule my-rule: when: type rules.HandshakeFields has no field unanswerd"},
		{"not a condition", rule("    when: client", "    summary: s"), ":5: rule my-rule: when: expected bool, but got string"},
		{"duration against a number", rule("    when: handshake.wait > 3", "    summary: s"), ":5: rule my-rule: when: invalid operation: > (mismatched types time.Duration and int)"},
		{"misspelt threshold", rule("    thresholds:", "      slow: 1s", "    when: handshake.wait > threshold.slw", "    summary: s"), ":7: rule my-rule: when: threshold has no field slw"},
		{"bad threshold", rule("    thresholds:", "      slow: fast", "    when: true", "    summary: s"), `:6: rule my-rule: thresholds: slow: "fast" is not a duration (2s), count (5)`},
		{"threshold twice", rule("    thresholds: {slow: 1s, slow: 2s}", "    when: true", "    summary: s"), ":5: rule my-rule: thresholds: slow is given twice"},
		{"bad summary", rule("    when: true", "    summary: '${clint} x'"), ":6: rule my-rule: summary: ${clint}: unknown name clint"},
		{"unclosed template", rule("    when: true", "    summary: '${client x'"), `:6: rule my-rule: summary: unclosed ${ in "${client x"`},
		{"bad next", rule("    when: true", "    summary: s", "    next:", "      - '${nope}'"), ":8: rule my-rule: next: ${nope}: unknown name nope"},
		{"over what", rule(append(base, "    over: http")...), `:7: rule my-rule: over: "http": rules can run over conversations only`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "rules.yaml", tt.file)
			_, err := LoadRules(path)
			if err == nil {
				t.Fatalf("no error")
			}
			if !strings.HasPrefix(err.Error(), path+tt.want) {
				t.Errorf("error\n %q\nwant prefix\n %q", err, path+tt.want)
			}
		})
	}
}

// TestUserRuleRuntimeErrors: an expression that fails on a conversation
// is counted with examples; the other conversations and rules go on.
func TestUserRuleRuntimeErrors(t *testing.T) {
	user, err := LoadRules(writeFile(t, "rules.yaml", `rules:
  - id: port-math
    title: T
    severity: low
    when: int(split(client, ":")[1]) > 4000
    summary: "${client}"
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := NewConfig(user...)
	in := input(10*s,
		conv(1, "10.0.0.5:5000", "10.0.0.9:80").handshake(0).done(),
		conv(2, "[::1]:5000", "[::1]:80").handshake(0).done(),
	)
	res := Evaluate(in, cfg)
	n := 0
	for _, inc := range res.Incidents {
		if inc.Rule == "port-math" {
			n++
		}
	}
	if n != 1 || len(res.Problems) != 1 || res.Problems[0].Count != 1 || !strings.Contains(res.Problems[0].Examples[0], ":5: when, on conversation 2:") {
		t.Errorf("%d incidents, problems %+v", n, res.Problems)
	}
}
