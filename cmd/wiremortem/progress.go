package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"wiremortem/analysis"
	"wiremortem/internal/memguard"
)

// progress draws a progress bar on stderr when it is a terminal and the
// user did not ask for quiet; otherwise it does nothing.
type progress struct {
	bar   *progressbar.ProgressBar
	w     io.Writer
	start time.Time
}

func newProgress(stderr io.Writer, quiet bool) *progress {
	f, ok := stderr.(*os.File)
	if quiet || !ok || !term.IsTerminal(int(f.Fd())) {
		return &progress{}
	}
	return &progress{w: stderr}
}

func (p *progress) update(u analysis.Progress) {
	if p.w == nil {
		return
	}
	if p.bar == nil {
		p.bar = progressbar.NewOptions64(u.BytesTotal,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription("reading captures"),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
		p.start = time.Now()
	}
	if secs := time.Since(p.start).Seconds(); secs > 0 {
		live, stopAt := memguard.Use()
		p.bar.Describe(progressText(u.Packets, secs, live, stopAt))
	}
	p.bar.Set64(u.BytesRead)
}

// progressText is the bar's description: packets read, their rate, and
// what the analysis keeps against where the memory limit stops it.
func progressText(packets int64, secs float64, live, stopAt int64) string {
	text := fmt.Sprintf("reading captures: %d packets, %.0f packets/s", packets, float64(packets)/secs)
	if stopAt > 0 {
		text += fmt.Sprintf(", keeping %d MiB (stops at %d MiB)", live>>20, stopAt>>20)
	}
	return text
}

func (p *progress) done() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
