package nginx

import (
	"fmt"
	"sort"
	"strings"
)

// Escaping is how nginx escaped variable values in an access log: the
// escape= parameter of log_format (nginx 1.11.8; "none" since 1.13.10).
type Escaping string

const (
	// EscapeDefault writes `"`, `\`, control bytes and bytes >= 0x7f as
	// \xHH, and "-" for a variable that has no value.
	EscapeDefault Escaping = "default"
	// EscapeJSON writes values as JSON string contents (\", \\, \n, \u00XX)
	// and nothing at all for a variable that has no value.
	EscapeJSON Escaping = "json"
	// EscapeNone writes values as they are, and "-" for no value.
	EscapeNone Escaping = "none"
)

// DefaultFormatName is the format nginx uses when access_log names none.
const DefaultFormatName = "combined"

// namedFormats are the formats a user may give by name. "combined" is built
// into nginx (ngx_http_log_module.c); "main" is the one the nginx.org
// packages and the stock conf/nginx.conf define (Debian's nginx.conf
// defines no "main" and logs "combined").
var namedFormats = map[string]string{
	"combined": `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`,
	"main":     `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for"`,
}

// NamedFormats returns the names ParseFormat accepts alone, sorted.
func NamedFormats() []string {
	names := make([]string, 0, len(namedFormats))
	for n := range namedFormats {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// AccessFormat is a compiled log_format: the literal text and the variables
// in the order nginx writes them.
type AccessFormat struct {
	// Name is the format's name: a named format, the name in a log_format
	// directive, or "" for a bare format text.
	Name string
	// Escape is the escaping nginx applied to values.
	Escape Escaping
	// Text is the format string after nginx's concatenation of its pieces.
	Text string

	pieces []piece
}

// piece is either literal text or one variable.
type piece struct {
	literal string
	field   field
}

func (p piece) isVariable() bool { return p.field.name != "" }

// field is one variable of a format and what it means to us.
type field struct {
	name string // without "$"
	kind fieldKind
}

type fieldKind uint8

const (
	kindOther fieldKind = iota
	kindRemoteAddr
	kindRemotePort
	kindRemoteUser
	kindTimeLocal
	kindTimeISO8601
	kindMsec
	kindRequest
	kindRequestMethod
	kindRequestURI
	kindServerProtocol
	kindStatus
	kindBodyBytesSent
	kindBytesSent
	kindRequestLength
	kindRequestTime
	kindUpstreamAddr
	kindUpstreamStatus
	kindUpstreamConnectTime
	kindUpstreamHeaderTime
	kindUpstreamResponseTime
	kindConnection
	kindConnectionRequests
	kindHost
	kindServerAddr
	kindServerPort
	kindHeader // $http_*
)

var kindByName = map[string]fieldKind{
	"remote_addr":            kindRemoteAddr,
	"remote_port":            kindRemotePort,
	"remote_user":            kindRemoteUser,
	"time_local":             kindTimeLocal,
	"time_iso8601":           kindTimeISO8601,
	"msec":                   kindMsec,
	"request":                kindRequest,
	"request_method":         kindRequestMethod,
	"request_uri":            kindRequestURI,
	"server_protocol":        kindServerProtocol,
	"status":                 kindStatus,
	"body_bytes_sent":        kindBodyBytesSent,
	"bytes_sent":             kindBytesSent,
	"request_length":         kindRequestLength,
	"request_time":           kindRequestTime,
	"upstream_addr":          kindUpstreamAddr,
	"upstream_status":        kindUpstreamStatus,
	"upstream_connect_time":  kindUpstreamConnectTime,
	"upstream_header_time":   kindUpstreamHeaderTime,
	"upstream_response_time": kindUpstreamResponseTime,
	"connection":             kindConnection,
	"connection_requests":    kindConnectionRequests,
	"host":                   kindHost,
	"server_addr":            kindServerAddr,
	"server_port":            kindServerPort,
}

func kindOf(name string) fieldKind {
	if k, ok := kindByName[name]; ok {
		return k
	}
	if strings.HasPrefix(name, "http_") && len(name) > len("http_") {
		return kindHeader
	}
	return kindOther
}

// isUpstreamList reports whether nginx writes the variable as a list:
// "a, b : c", a comma between servers tried in one upstream group and a
// colon between groups after an internal redirect.
func (k fieldKind) isUpstreamList() bool {
	switch k {
	case kindUpstreamAddr, kindUpstreamStatus, kindUpstreamConnectTime, kindUpstreamHeaderTime, kindUpstreamResponseTime:
		return true
	}
	return false
}

// hasShape reports whether a value of this kind can be scanned without
// knowing what follows it (digits, or a host name that stops at "/"), which
// is what lets two variables sit next to each other ("$host$request_uri").
func (k fieldKind) hasShape() bool {
	switch k {
	case kindRemotePort, kindServerPort, kindStatus, kindBodyBytesSent, kindBytesSent, kindRequestLength,
		kindRequestTime, kindMsec, kindConnection, kindConnectionRequests, kindHost:
		return true
	}
	return false
}

// FormatError says what is wrong with a log_format text and where.
type FormatError struct {
	// Offset is the byte offset in the text given to ParseFormat.
	Offset int
	// Problem says what is wrong.
	Problem string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("nginx log_format: byte %d: %s", e.Offset, e.Problem)
}

// ParseFormat compiles an access log format. It accepts:
//
//   - a name: "combined" (nginx's default) or "main" (see namedFormats);
//   - a whole directive as written in nginx.conf, with the concatenated
//     quoted pieces nginx allows:
//     log_format upstream escape=json '{"addr":"$remote_addr",' '"status":$status}';
//   - the string arguments alone, quoted as in nginx.conf ('...' '...');
//   - the format text itself, unquoted, as a shell passes
//     --nginx-log-format '$remote_addr - $remote_user [$time_local] ...'.
//
// Text made only of quoted strings (and an optional escape=) is read as
// nginx.conf strings; anything else that does not start with "log_format"
// is the format text verbatim.
func ParseFormat(directive string) (*AccessFormat, error) {
	s := strings.TrimSpace(directive)
	s = strings.TrimSpace(strings.TrimSuffix(s, ";"))
	if s == "" {
		return nil, &FormatError{Problem: "empty format"}
	}
	if text, ok := namedFormats[s]; ok {
		return compileFormat(s, EscapeDefault, text, 0)
	}
	base := len(directive) - len(strings.TrimLeft(directive, " \t\r\n"))
	if isBareWord(s) {
		return nil, &FormatError{Offset: base, Problem: fmt.Sprintf("unknown format name %q (known: %s); give the log_format text instead",
			s, strings.Join(NamedFormats(), ", "))}
	}
	if rest, ok := strings.CutPrefix(s, "log_format"); ok && rest != "" && isSpace(rest[0]) {
		toks, err := configTokens(s, base)
		if err != nil {
			return nil, err
		}
		args := statementArgs(toks[1:])
		if len(args) < 2 {
			return nil, &FormatError{Offset: base, Problem: "log_format needs a name and a format string"}
		}
		return compileDirectiveArgs(args[0].text, args[1:])
	}
	if s[0] == '\'' || s[0] == '"' || strings.HasPrefix(s, "escape=") {
		toks, err := configTokens(s, base)
		if err == nil && allQuotedAfterEscape(toks) {
			return compileDirectiveArgs("", toks)
		}
	}
	return compileFormat("", EscapeDefault, s, base)
}

// ParseConfigFormats compiles every log_format directive in the text of an
// nginx configuration file, keyed by name, plus the built-in "combined".
// It reads one file: include directives are not followed.
func ParseConfigFormats(conf string) (map[string]*AccessFormat, error) {
	toks, err := configTokens(conf, 0)
	if err != nil {
		return nil, err
	}
	combined, err := ParseFormat(DefaultFormatName)
	if err != nil {
		return nil, err
	}
	formats := map[string]*AccessFormat{DefaultFormatName: combined}
	atStatementStart := true
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.punct {
			atStatementStart = true
			continue
		}
		if !atStatementStart || t.quoted || t.text != "log_format" {
			atStatementStart = false
			continue
		}
		args := statementArgs(toks[i+1:])
		i += len(args)
		if len(args) < 2 {
			return nil, &FormatError{Offset: t.offset, Problem: "log_format needs a name and a format string"}
		}
		if _, dup := formats[args[0].text]; dup {
			return nil, &FormatError{Offset: args[0].offset, Problem: fmt.Sprintf("duplicate log_format name %q", args[0].text)}
		}
		f, err := compileDirectiveArgs(args[0].text, args[1:])
		if err != nil {
			return nil, err
		}
		formats[f.Name] = f
	}
	return formats, nil
}

// statementArgs returns the tokens up to the next ";", "{" or "}".
func statementArgs(toks []configToken) []configToken {
	for i, t := range toks {
		if t.punct {
			return toks[:i]
		}
	}
	return toks
}

func compileDirectiveArgs(name string, args []configToken) (*AccessFormat, error) {
	escape := EscapeDefault
	if len(args) > 0 && !args[0].quoted && strings.HasPrefix(args[0].text, "escape=") {
		switch v := Escaping(strings.TrimPrefix(args[0].text, "escape=")); v {
		case EscapeDefault, EscapeJSON, EscapeNone:
			escape = v
		default:
			return nil, &FormatError{Offset: args[0].offset, Problem: fmt.Sprintf("unknown escape %q (want default, json or none)", string(v))}
		}
		args = args[1:]
	}
	if len(args) == 0 {
		return nil, &FormatError{Problem: "log_format has no format string"}
	}
	var text strings.Builder
	for _, a := range args {
		text.WriteString(a.text)
	}
	return compileFormat(name, escape, text.String(), args[0].offset)
}

func allQuotedAfterEscape(toks []configToken) bool {
	if len(toks) > 0 && !toks[0].quoted && strings.HasPrefix(toks[0].text, "escape=") {
		toks = toks[1:]
	}
	if len(toks) == 0 {
		return false
	}
	for _, t := range toks {
		if !t.quoted {
			return false
		}
	}
	return true
}

func isBareWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isNameByte(c) || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

type configToken struct {
	text   string
	quoted bool
	punct  bool // ";", "{" or "}"
	offset int
}

// configTokens splits nginx.conf text the way ngx_conf_read_token does:
// whitespace separates, "#" starts a comment, ";", "{" and "}" end
// statements, single or double quotes group, and inside quotes a backslash
// escapes the quote or a backslash, or stands for \t, \r, \n; before any
// other byte it stays as written. A "{" right after "$" opens a variable
// name, as in "${name}".
func configTokens(s string, base int) ([]configToken, error) {
	var toks []configToken
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case isSpace(c):
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			toks = append(toks, configToken{text: s[i : i+1], punct: true, offset: base + i})
			i++
		case c == '\'' || c == '"':
			start := i
			var b strings.Builder
			i++
			for {
				if i >= len(s) {
					return nil, &FormatError{Offset: base + start, Problem: fmt.Sprintf("unterminated %c quote", c)}
				}
				if s[i] == c {
					i++
					break
				}
				if s[i] == '\\' && i+1 < len(s) {
					switch e := s[i+1]; e {
					case '"', '\'', '\\':
						b.WriteByte(e)
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					case 'n':
						b.WriteByte('\n')
					default:
						b.WriteByte('\\')
						b.WriteByte(e)
					}
					i += 2
					continue
				}
				b.WriteByte(s[i])
				i++
			}
			if i < len(s) && !isSpace(s[i]) && s[i] != ';' && s[i] != '{' && s[i] != '}' {
				return nil, &FormatError{Offset: base + i, Problem: fmt.Sprintf("unexpected %q after a quoted string", s[i])}
			}
			toks = append(toks, configToken{text: b.String(), quoted: true, offset: base + start})
		default:
			start := i
			inVariable := false
			for i < len(s) && !isSpace(s[i]) && (inVariable || (s[i] != ';' && s[i] != '{' && s[i] != '}')) {
				switch {
				case s[i] == '{' && i > start && s[i-1] == '$':
					inVariable = true
				case s[i] == '}':
					inVariable = false
				}
				i++
			}
			toks = append(toks, configToken{text: s[start:i], offset: base + start})
		}
	}
	return toks, nil
}

// compileFormat splits format text into literals and variables as
// ngx_http_log_compile_format does: "$name" or "${name}", names made of
// letters, digits and "_".
func compileFormat(name string, escape Escaping, text string, base int) (*AccessFormat, error) {
	f := &AccessFormat{Name: name, Escape: escape, Text: text}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			f.pieces = append(f.pieces, piece{literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(text); {
		if text[i] != '$' {
			lit.WriteByte(text[i])
			i++
			continue
		}
		start := i
		i++
		braced := i < len(text) && text[i] == '{'
		if braced {
			i++
		}
		nameStart := i
		for i < len(text) && isNameByte(text[i]) {
			i++
		}
		varName := text[nameStart:i]
		if braced {
			if i >= len(text) || text[i] != '}' {
				return nil, &FormatError{Offset: base + start, Problem: "missing closing \"}\" in variable name"}
			}
			i++
		}
		if varName == "" {
			return nil, &FormatError{Offset: base + start, Problem: "\"$\" is not followed by a variable name"}
		}
		flush()
		f.pieces = append(f.pieces, piece{field: field{name: varName, kind: kindOf(varName)}})
	}
	flush()
	if len(f.pieces) == 0 {
		return nil, &FormatError{Offset: base, Problem: "empty format"}
	}
	for i := 0; i+1 < len(f.pieces); i++ {
		a, b := f.pieces[i], f.pieces[i+1]
		if a.isVariable() && b.isVariable() && !a.field.kind.hasShape() {
			return nil, &FormatError{Offset: base, Problem: fmt.Sprintf(
				"$%s is followed directly by $%s: there is no text between them to tell where one ends", a.field.name, b.field.name)}
		}
	}
	return f, nil
}

// Variables returns the names of the format's variables in order, without "$".
func (f *AccessFormat) Variables() []string {
	var names []string
	for _, p := range f.pieces {
		if p.isVariable() {
			names = append(names, p.field.name)
		}
	}
	return names
}

// String returns the format text.
func (f *AccessFormat) String() string { return f.Text }
