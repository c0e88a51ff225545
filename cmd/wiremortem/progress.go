package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"wiremortem/analysis"
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
		p.bar.Describe(fmt.Sprintf("reading captures: %d packets, %.0f packets/s", u.Packets, float64(u.Packets)/secs))
	}
	p.bar.Set64(u.BytesRead)
}

func (p *progress) done() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
