package analysis

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"wiremortem/internal/lab"
	"wiremortem/internal/testenv"
)

func TestMain(m *testing.M) {
	lab.RunRoleIfAsked() // live scenarios re-execute this binary for their peers
	os.Exit(m.Run())
}

// TestLiveSeeds makes three of the seed incidents again, now, on this
// machine's kernel (real tcpdump, strace, nginx on loopback), and judges
// the rules on them as on the committed captures: a kernel that behaves
// differently from the one the committed captures came from shows here.
// (internal/lab regenerates other scenarios at the same time; these use
// different addresses.)
func TestLiveSeeds(t *testing.T) {
	testenv.Root(t)
	for _, tool := range []string{"tcpdump", "strace", "ss", "nstat", "netstat", "nginx"} {
		testenv.Tool(t, tool)
	}
	out := t.TempDir()
	scores := scoreBoard{}
	for _, name := range []string{"ws-no-101", "zero-window-nginx", "syn-backlog"} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			facts, err := lab.Run(ctx, name, out)
			if err != nil {
				t.Fatal(err)
			}
			scores.judge(t, filepath.Join(out, name), facts)
		})
	}
	t.Log("\n" + scores.String())
}
