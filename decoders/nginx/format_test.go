package nginx

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseFormat(t *testing.T) {
	combined := namedFormats["combined"]
	tests := []struct {
		name       string
		directive  string
		wantName   string
		wantEscape Escaping
		wantText   string
		wantVars   []string
	}{
		{
			name:       "default name",
			directive:  "combined",
			wantName:   "combined",
			wantEscape: EscapeDefault,
			wantText:   combined,
			wantVars:   []string{"remote_addr", "remote_user", "time_local", "request", "status", "body_bytes_sent", "http_referer", "http_user_agent"},
		},
		{
			name:       "main adds x_forwarded_for",
			directive:  " main ",
			wantName:   "main",
			wantEscape: EscapeDefault,
			wantText:   combined + ` "$http_x_forwarded_for"`,
			wantVars:   []string{"remote_addr", "remote_user", "time_local", "request", "status", "body_bytes_sent", "http_referer", "http_user_agent", "http_x_forwarded_for"},
		},
		{
			name: "directive as in nginx.conf, concatenated pieces",
			directive: `log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';`,
			wantName:   "main",
			wantEscape: EscapeDefault,
			wantText:   combined + ` "$http_x_forwarded_for"`,
			wantVars:   []string{"remote_addr", "remote_user", "time_local", "request", "status", "body_bytes_sent", "http_referer", "http_user_agent", "http_x_forwarded_for"},
		},
		{
			name:       "escape=json directive with double-quoted escapes",
			directive:  `log_format js escape=json "{\"addr\":\"$remote_addr\"," '"status":$status}';`,
			wantName:   "js",
			wantEscape: EscapeJSON,
			wantText:   `{"addr":"$remote_addr","status":$status}`,
			wantVars:   []string{"remote_addr", "status"},
		},
		{
			name:       "quoted pieces without the keyword",
			directive:  `'$remote_addr:$remote_port ' '$connection'`,
			wantEscape: EscapeDefault,
			wantText:   `$remote_addr:$remote_port $connection`,
			wantVars:   []string{"remote_addr", "remote_port", "connection"},
		},
		{
			name:       "escape=none before quoted pieces",
			directive:  `escape=none '$request'`,
			wantEscape: EscapeNone,
			wantText:   `$request`,
			wantVars:   []string{"request"},
		},
		{
			name:       "raw text as a shell passes it keeps its quotes",
			directive:  `"$request" $status ${connection}x`,
			wantEscape: EscapeDefault,
			wantText:   `"$request" $status ${connection}x`,
			wantVars:   []string{"request", "status", "connection"},
		},
		{
			name:       "comment inside a pasted directive",
			directive:  "log_format c '$status' # why\n ' $msec';",
			wantName:   "c",
			wantEscape: EscapeDefault,
			wantText:   `$status $msec`,
			wantVars:   []string{"status", "msec"},
		},
		{
			name:       "host then request_uri with nothing between",
			directive:  `$host$request_uri $status`,
			wantEscape: EscapeDefault,
			wantText:   `$host$request_uri $status`,
			wantVars:   []string{"host", "request_uri", "status"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFormat(tt.directive)
			if err != nil {
				t.Fatalf("ParseFormat: %v", err)
			}
			if f.Name != tt.wantName || f.Escape != tt.wantEscape || f.Text != tt.wantText {
				t.Errorf("got name %q escape %q text %q; want %q %q %q", f.Name, f.Escape, f.Text, tt.wantName, tt.wantEscape, tt.wantText)
			}
			if got := f.Variables(); !reflect.DeepEqual(got, tt.wantVars) {
				t.Errorf("Variables() = %q, want %q", got, tt.wantVars)
			}
		})
	}
}

func TestParseFormatErrors(t *testing.T) {
	tests := []struct {
		directive  string
		wantOffset int
		wantIn     string
	}{
		{"", 0, "empty format"},
		{";", 0, "empty format"},
		{"  common", 2, `unknown format name "common"`},
		{`log_format x '$status`, 13, "unterminated ' quote"},
		{`log_format x`, 0, "needs a name and a format string"},
		{`log_format x escape=xml '$status'`, 13, `unknown escape "xml"`},
		{`$remote_addr $`, 13, `"$" is not followed by a variable name`},
		{`${status`, 0, `missing closing "}"`},
		{`$request$status`, 0, "$request is followed directly by $status"},
		{`log_format x 'a'b`, 16, "unexpected 'b' after a quoted string"},
	}
	for _, tt := range tests {
		t.Run(tt.directive, func(t *testing.T) {
			_, err := ParseFormat(tt.directive)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a *FormatError", err)
			}
			if fe.Offset != tt.wantOffset || !strings.Contains(fe.Error(), tt.wantIn) {
				t.Errorf("err = %q (offset %d), want offset %d and %q", fe.Error(), fe.Offset, tt.wantOffset, tt.wantIn)
			}
		})
	}
}

func TestParseConfigFormats(t *testing.T) {
	conf := `
http {
    # log_format commented '$status';
    log_format  short  '$remote_addr $status';
    log_format js escape=json '{"s":$status,'
                              '"v":"${connection}"}';
    server { access_log /var/log/x.log short; location / { return 200 "log_format x"; } }
}`
	formats, err := ParseConfigFormats(conf)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for name, f := range formats {
		got[name] = string(f.Escape) + " " + f.Text
	}
	want := map[string]string{
		"combined": "default " + namedFormats["combined"],
		"short":    "default $remote_addr $status",
		"js":       `json {"s":$status,"v":"${connection}"}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}

	_, err = ParseConfigFormats("log_format a '$status'; log_format a '$msec';")
	if err == nil || !strings.Contains(err.Error(), `byte 35: duplicate log_format name "a"`) {
		t.Errorf("duplicate name: err = %v", err)
	}
}
