package lab

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nginxLogFormat is the access log format every nginx scenario uses: the
// combined format plus the client port, nginx's connection serial and the
// upstream's address and timings, as key=value pairs.
const (
	nginxLogFormatName = "lab"
	nginxLogFormat     = `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" ` +
		`rport=$remote_port conn=$connection reqs=$connection_requests upstream=$upstream_addr ustatus=$upstream_status ` +
		`rt=$request_time uct=$upstream_connect_time urt=$upstream_response_time`
)

// nginxSpec is what a scenario's nginx does: listen on nginx's address,
// proxy to the upstream's, with the scenario's server-level directives and
// locations.
type nginxSpec struct {
	Listen   string // "127.0.N.10:8080 sndbuf=16k"
	Bind     string // proxy_bind address: the upstream connections' source
	Server   string // extra server-level directives
	Location string // location blocks
}

// nginxConf renders the configuration. Every path is relative to the
// prefix (the scenario directory), so the file is the same wherever the
// lab ran. The lab tells nginx its own connection serial through headers:
// X-Lab-Connection to the upstream (proxy_set_header) and back to the
// client (add_header ... always, so error answers carry it too).
func nginxConf(s nginxSpec) string {
	return `# nginx configuration written by wiremortem's lab (internal/lab/nginx.go).
daemon off;
master_process on;
worker_processes 1;
user root;
pid nginx.pid;
error_log error.log info;

events {
    worker_connections 256;
}

http {
    log_format ` + nginxLogFormatName + ` '` + nginxLogFormat + `';
    access_log access.log ` + nginxLogFormatName + `;

    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }

    server {
        listen ` + s.Listen + `;
        server_name lab;
        proxy_bind ` + s.Bind + `;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header X-Lab-Connection $connection;
        proxy_set_header X-Lab-Client $remote_addr:$remote_port;
        add_header X-Lab-Connection $connection always;
` + s.Server + s.Location + `    }
}
`
}

// nginxProc is a running nginx.
type nginxProc struct {
	e      *Env
	cmd    *exec.Cmd
	args   []string
	master int
	worker int
	done   chan error
}

// startNginx writes nginx.conf into the scenario directory, starts nginx
// with the directory as its prefix, and waits for its pid file (written
// after the listening sockets are open).
func (e *Env) startNginx(s nginxSpec) (*nginxProc, error) {
	if err := os.MkdirAll(e.Path("tmp"), 0o755); err != nil {
		return nil, err
	}
	e.Defer(func() { os.RemoveAll(e.Path("tmp")); os.Remove(e.Path("nginx.pid")) })
	if err := os.WriteFile(e.Path("nginx.conf"), []byte(nginxConf(s)), 0o644); err != nil {
		return nil, err
	}
	n := &nginxProc{e: e, done: make(chan error, 1)}
	n.args = []string{"nginx", "-p", e.dir + "/", "-c", "nginx.conf", "-e", "error.log"}
	n.cmd = exec.Command(n.args[0], n.args[1:]...)
	n.cmd.Env = e.Environ()
	n.cmd.Stderr = os.Stderr
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { n.done <- n.cmd.Wait() }()
	e.Defer(func() { n.kill() })
	deadline := time.Now().Add(5 * time.Second)
	for n.worker == 0 {
		select {
		case err := <-n.done:
			n.done <- err
			return nil, fmt.Errorf("nginx exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("nginx: no pid file or worker after 5s")
		}
		time.Sleep(20 * time.Millisecond)
		b, err := os.ReadFile(e.Path("nginx.pid"))
		if err != nil {
			continue
		}
		n.master, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", n.master, n.master))
		if f := strings.Fields(string(kids)); len(f) > 0 {
			n.worker, _ = strconv.Atoi(f[0])
		}
	}
	return n, nil
}

// stop shuts nginx down fast (SIGTERM: open connections are closed, not
// waited for) and records its files and processes.
func (n *nginxProc) stop() error {
	if err := syscall.Kill(n.master, syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-n.done:
		if err != nil {
			return fmt.Errorf("nginx: %w", err)
		}
	case <-time.After(10 * time.Second):
		return fmt.Errorf("nginx did not stop on SIGTERM")
	}
	e := n.e
	e.AddProcess(Process{Name: "nginx", Role: "nginx master", PID: n.master})
	// The worker's pid is the pid#tid of every error log line.
	e.AddProcess(Process{Name: "nginx-worker", Role: "nginx worker", PID: n.worker, TIDs: []int{n.worker}})
	e.AddFile(File{Name: "nginx.conf", Kind: KindNginxConf})
	e.AddFile(File{Name: "access.log", Kind: KindNginxAccess, Command: n.args, LogFormatName: nginxLogFormatName, LogFormat: nginxLogFormat})
	e.AddFile(File{Name: "error.log", Kind: KindNginxError, Command: n.args, LogLevel: "info"})
	return nil
}

func (n *nginxProc) kill() {
	if n.cmd.ProcessState == nil && n.cmd.Process != nil {
		n.cmd.Process.Kill()
		<-n.done
	}
}
