package rules

import (
	"strings"
	"testing"
)

// The config, --set and user-rule readers take text from users; none may
// panic, and every error must name the file it came from.

func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte("rules:\n  close-wait:\n    min_age: 2s\nlimits:\n  max_incidents: 5\n"), false)
	f.Add([]byte("[rules.close-wait]\nmin_age = \"2s\"\n[rules]\nsyn-unanswered = { storm_attempts = 9 }\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, isTOML bool) {
		path := "cfg.yaml"
		if isTOML {
			path = "cfg.toml"
		}
		cfg, _ := NewConfig()
		if err := cfg.load(path, data); err != nil && !strings.HasPrefix(err.Error(), path+":") {
			t.Fatalf("error without the file name: %v", err)
		}
	})
}

func FuzzParseSet(f *testing.F) {
	for _, s := range []string{"close-wait.min_age=2s", "idle-timeout-teardown.timeouts=30s,60s", "limits.max_incidents=3", "x.y=z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, _ := NewConfig()
		if err := ParseSet(cfg, s); err != nil && !strings.HasPrefix(err.Error(), "--set ") {
			t.Fatalf("error without --set: %v", err)
		}
	})
}

func FuzzLoadRules(f *testing.F) {
	f.Add([]byte(slowHandshakeRules))
	f.Add([]byte("rules:\n  - id: a\n    title: t\n    severity: low\n    when: close.first_kind == \"rst\"\n    summary: \"${close.idle_before} ${ {\"}\": 1} }\"\n"))
	in := input(30*s,
		conv(1, "10.0.0.5:5000", "10.0.0.9:80").syn(0, 1*s).synack(2900*ms).ack(2901*ms).done(),
		conv(2, "[::1]:5000", "[::1]:80").handshake(0).rst(0, 1*s, 10).done(),
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		user, err := loadRules("rules.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "rules.yaml:") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		cfg, err := NewConfig(user...)
		if err != nil {
			return
		}
		Evaluate(in, cfg)
	})
}
