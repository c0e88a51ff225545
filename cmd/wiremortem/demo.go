package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"wiremortem"
	"wiremortem/analysis"
)

// runDemo analyses the four seed incidents, embedded in the binary, as one
// case: their captures and logs together, the way an SRE would pass them
// to analyze. The inputs are written to a temporary directory and named by
// scenario ("ws-no-101/capture.pcap") so the output is the same on every
// machine.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", "[-o FILE.html] [--json FILE] [--explain]", stderr)
	htmlOut := fs.StringP("output", "o", "wiremortem-demo.html", "write the HTML report to `FILE`")
	jsonOut := fs.String("json", "", "also write the JSON document to `FILE`")
	explain := fs.Bool("explain", false, "after the verdict, print each incident in full, as analyze --explain does")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "wiremortem demo: takes no file arguments (the inputs are embedded)")
		return exitUsage
	}
	res, err := analyseDemo()
	if err != nil {
		fmt.Fprintln(stderr, "wiremortem demo:", err)
		return exitInputError
	}
	defer res.Close()
	if *jsonOut != "" {
		if err := writeOutput(*jsonOut, stdout, res.WriteJSON); err != nil {
			fmt.Fprintln(stderr, "wiremortem demo:", err)
			return exitInputError
		}
	}
	if err := writeOutput(*htmlOut, stdout, func(w io.Writer) error { return renderHTML(w, res) }); err != nil {
		fmt.Fprintln(stderr, "wiremortem demo:", err)
		return exitInputError
	}
	if *jsonOut == "-" || *htmlOut == "-" { // stdout holds a document: nothing may follow it
		return reportInputErrors(res, stderr)
	}
	analysis.WriteVerdict(stdout, res.Document)
	if *explain {
		analysis.WriteExplanation(stdout, res.Document)
	}
	fmt.Fprintf(stdout, "\nreport written to %s (open it in a browser)\n", *htmlOut)
	return reportInputErrors(res, stderr)
}

// analyseDemo extracts the embedded scenarios and analyses them. It runs
// from inside the temporary directory so that inputs are named by their
// scenario-relative paths, and returns to the working directory after.
func analyseDemo() (*analysis.Result, error) {
	dir, err := os.MkdirTemp("", "wiremortem-demo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	demo := wiremortem.Demo()
	var inputs []analysis.Input
	opts := analysis.Options{CommandLine: []string{"wiremortem", "demo"}}
	for _, scenario := range wiremortem.DemoScenarios {
		files, format, err := demoFiles(demo, scenario)
		if err != nil {
			return nil, err
		}
		if format != "" {
			opts.NginxLogFormat = format
		}
		for _, name := range files {
			rel := scenario + "/" + name
			data, err := fs.ReadFile(demo, rel)
			if err != nil {
				return nil, err
			}
			if err := os.MkdirAll(filepath.Join(dir, scenario), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, rel), data, 0o644); err != nil {
				return nil, err
			}
			inputs = append(inputs, analysis.Input{Path: rel})
		}
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	if err := os.Chdir(dir); err != nil {
		return nil, err
	}
	defer os.Chdir(cwd)
	return analysis.Run(context.Background(), inputs, opts)
}

// demoFiles lists a scenario's inputs from its facts.json (every capture
// and log the lab wrote that wiremortem reads), and the nginx log_format
// its access log was written with, as one would read it from nginx.conf.
func demoFiles(demo fs.FS, scenario string) (files []string, logFormat string, err error) {
	data, err := fs.ReadFile(demo, scenario+"/facts.json")
	if err != nil {
		return nil, "", err
	}
	var facts struct {
		Files []struct {
			Name      string `json:"name"`
			Kind      string `json:"kind"`
			LogFormat string `json:"log_format"`
		} `json:"files"`
	}
	if err := json.Unmarshal(data, &facts); err != nil {
		return nil, "", fmt.Errorf("%s/facts.json: %v", scenario, err)
	}
	for _, f := range facts.Files {
		if _, err := fs.Stat(demo, scenario+"/"+f.Name); err != nil {
			continue // not embedded: not an input (nginx.conf, the lab client's log)
		}
		files = append(files, f.Name)
		if f.LogFormat != "" {
			logFormat = f.LogFormat
		}
	}
	return files, logFormat, nil
}
