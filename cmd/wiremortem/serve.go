package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"wiremortem/analysis"
	"wiremortem/serve"
)

func runServe(args []string, stdout, stderr io.Writer) int {
	const usage = "[--addr HOST:PORT] [--data DIR] [--token TOKEN] [flags]"
	fs := newFlagSet("serve", usage, stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "listen on `HOST:PORT`; any address but loopback needs a token (--token, or one is made and printed)")
	data := fs.String("data", "", "cases `directory` (a batch --out directory opens as cases); default wiremortem/cases in the user's data directory")
	token := fs.String("token", "", "`TOKEN` every request must carry (Authorization: Bearer, or the cookie the printed ?token= link sets)")
	jobs := fs.IntP("jobs", "j", 1, "cases analysed at once")
	maxFile := byteSize(serve.DefaultMaxFileBytes)
	maxCase := byteSize(serve.DefaultMaxCaseBytes)
	fs.Var(&maxFile, "max-upload-file", "bytes of one uploaded file (past it the upload is refused, 413)")
	fs.Var(&maxCase, "max-upload-case", "bytes of one case's files together")
	quiet := fs.BoolP("quiet", "q", false, "no line per case on stderr")
	rf := addRuleFlags(fs)
	lf := addLimitFlags(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wiremortem serve: unexpected argument %q\n", analysis.Safe(fs.Arg(0)))
		fs.Usage()
		return exitUsage
	}
	cfg := serve.Config{Data: *data, Token: *token, Workers: *jobs, MaxFileBytes: int64(maxFile), MaxCaseBytes: int64(maxCase)}
	var err error
	if cfg.Analysis.Rules, err = rf.config(); err != nil {
		fmt.Fprintln(stderr, "wiremortem serve:", analysis.Safe(err.Error()))
		return exitUsage
	}
	lf.apply(fs, &cfg.Analysis)
	if cfg.Data == "" {
		if cfg.Data, err = serve.DefaultDataDir(); err != nil {
			fmt.Fprintln(stderr, "wiremortem serve: no --data given and", err)
			return exitUsage
		}
	}
	if !*quiet {
		cfg.Log = func(format string, a ...any) {
			fmt.Fprintln(stderr, "wiremortem serve:", analysis.Safe(fmt.Sprintf(format, a...)))
		}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(stderr, "wiremortem serve:", err)
		return exitUsage
	}
	if cfg.Token == "" && !serve.IsLoopback(ln.Addr()) {
		cfg.Token = serve.NewToken()
	}
	srv, err := serve.New(cfg)
	if err != nil {
		ln.Close()
		fmt.Fprintln(stderr, "wiremortem serve:", err)
		return exitInputError
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "wiremortem serve: cases in %s\nopen %s\n", srv.Dir(), pageURL(ln.Addr(), cfg.Token))
	if err := srv.Serve(ctx, ln); err != nil {
		fmt.Fprintln(stderr, "wiremortem serve:", err)
		return exitInputError
	}
	return exitOK
}

// pageURL is the address to open: this host's name when listening on
// every address, and the token as a ?token= link when there is one.
func pageURL(addr net.Addr, token string) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil {
			host = name
		}
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/"}
	if token != "" {
		u.RawQuery = url.Values{"token": {token}}.Encode()
	}
	return u.String()
}
