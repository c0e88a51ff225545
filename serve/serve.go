// Package serve is wiremortem's web page: drop captures and logs into a
// browser, get the report, keep the cases. It runs on the analyst's own
// machine or a team's internal host, so captures full of customers' data
// never go to somebody else's server.
//
// A case is a directory under the data directory holding the uploads, a
// manifest and batch's outputs (see store.go), so a batch output directory
// opens as cases. Uploads stream to disk under size caps; analyses run in
// the background, a few at a time, through batch; pages are html/template
// with a Content-Security-Policy, and reports open sandboxed. Without a
// token the server answers only on loopback; with one, every request must
// carry it.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"wiremortem/analysis"
)

// Config is what the command line decides.
type Config struct {
	// Data is the directory of cases, created if missing.
	Data string
	// Token, when set, must come with every request; without it the
	// server answers only on loopback.
	Token string
	// Workers is how many cases are analysed at once (default 1).
	Workers int
	// MaxFileBytes caps one uploaded file and MaxCaseBytes one case's
	// files together (defaults 4 GiB and 8 GiB).
	MaxFileBytes, MaxCaseBytes int64
	// Analysis holds every analysis's limits and rules; a case's own
	// settings (clocks, log_format) are added to it.
	Analysis analysis.Options
	// Log, if set, receives a line per case queued, analysed, failed or
	// interrupted.
	Log func(format string, args ...any)
}

// Default upload caps: a day of captures on a busy host fits.
const (
	DefaultMaxFileBytes = 4 << 30
	DefaultMaxCaseBytes = 8 << 30
)

// uploadGrace is how long uploads in flight may go on once the server
// is told to stop.
const uploadGrace = 10 * time.Second

// Server serves the pages and runs the analyses.
type Server struct {
	cfg  Config
	dir  string // absolute path of the data directory
	root *os.Root
	// ctx is the analyses' parent, cancelled by Close.
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	queue []*job
	jobs  map[string]*job // queued or running, by case id
	wake  chan struct{}

	workers sync.WaitGroup
	uploads sync.WaitGroup
	handler http.Handler

	// beforeAnalyse, set by tests, runs as a worker takes a case.
	beforeAnalyse func(ctx context.Context, id string)
}

// New opens (or creates) the data directory, readies it after a stop
// (queued cases queued again, running ones marked interrupted) and starts
// the workers.
func New(cfg Config) (*Server, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.MaxFileBytes <= 0 {
		cfg.MaxFileBytes = DefaultMaxFileBytes
	}
	if cfg.MaxCaseBytes <= 0 {
		cfg.MaxCaseBytes = DefaultMaxCaseBytes
	}
	dir, err := filepath.Abs(cfg.Data)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, dir: dir, root: root, ctx: ctx, cancel: cancel,
		jobs: map[string]*job{}, wake: make(chan struct{}, cfg.Workers)}
	if err := s.resume(); err != nil {
		cancel()
		root.Close()
		return nil, fmt.Errorf("readying %s: %w", dir, err)
	}
	s.handler = s.guard(s.routes())
	for range cfg.Workers {
		s.workers.Add(1)
		go s.work()
	}
	return s, nil
}

// Handler answers every request.
func (s *Server) Handler() http.Handler { return s.handler }

// Dir is the data directory's absolute path.
func (s *Server) Dir() string { return s.dir }

// Serve answers on ln until ctx is done (SIGINT), then stops: it accepts
// no more connections, gives uploads in flight a grace period, stops the
// analyses (a running case is marked interrupted and keeps the report of
// what was read; queued cases stay queued for the next start) and
// returns. Without a token it refuses a listener that is not on loopback.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.Token == "" && !IsLoopback(ln.Addr()) {
		return fmt.Errorf("%s is not a loopback address: serving other hosts needs a token", ln.Addr())
	}
	hs := &http.Server{
		Handler: s.handler,
		// Headers must come quickly (slowloris); bodies may take as long
		// as a big upload takes.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(logWriter{s}, "", 0),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	var err error
	select {
	case err = <-served:
	case <-ctx.Done():
	}
	s.cancel()
	grace, cancel := context.WithTimeout(context.Background(), uploadGrace)
	defer cancel()
	if hs.Shutdown(grace) != nil {
		hs.Close()
	}
	s.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close stops the analyses and waits for the workers and for uploads to
// finish writing (an upload cut short removes its files).
func (s *Server) Close() error {
	s.cancel()
	s.workers.Wait()
	s.uploads.Wait()
	return s.root.Close()
}

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Log != nil {
		s.cfg.Log(format, args...)
	}
}

// logWriter sends net/http's own complaints (TLS handshakes on a plain
// port, broken connections) to Config.Log.
type logWriter struct{ s *Server }

func (w logWriter) Write(p []byte) (int, error) {
	w.s.logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// DefaultDataDir is where cases live unless told: wiremortem/cases under
// $XDG_DATA_HOME (~/.local/share) on Unix, ~/Library/Application Support
// on macOS, %LocalAppData% on Windows. Cases are the user's data, not a
// cache: nothing may clear them behind the user's back.
func DefaultDataDir() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "wiremortem", "cases"), nil
	}
	var base string
	var err error
	switch runtime.GOOS {
	case "darwin":
		base, err = os.UserConfigDir()
	case "windows":
		base, err = os.UserCacheDir()
	default:
		base, err = os.UserHomeDir()
		base = filepath.Join(base, ".local", "share")
	}
	if err != nil {
		return "", err
	}
	return filepath.Join(base, "wiremortem", "cases"), nil
}
