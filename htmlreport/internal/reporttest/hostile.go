package reporttest

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"wiremortem/analysis"
)

// Payload is the script every injection in XSS runs if it ever executes:
// the browser test checks that neither mark appears.
const (
	PwnedGlobal = "__wiremortemPwned"
	PwnedTitle  = "PWNED"
	payload     = "window." + PwnedGlobal + "=1;document.title='" + PwnedTitle + "'"
)

// XSS is the hostile-content corpus: strings an attacker can place in a
// capture or a log (URIs, headers, payloads, close reasons, log lines,
// file names). Each would run script, fetch something or break the page
// if it reached the DOM, a script or a style unescaped.
var XSS = []string{
	`<script>` + payload + `</script>`,
	`</script><script>` + payload + `</script>`,
	`</SCRIPT ><script>` + payload + `</script >`,
	`"onmouseover="` + payload + `" x="`,
	`' onmouseover='` + payload + `' x='`,
	`javascript:` + payload,
	`<a href="javascript:` + payload + `">click</a>`,
	`<img src=x onerror="` + payload + `">`,
	`<svg onload="` + payload + `"></svg>`,
	`<iframe src="https://example.invalid/"></iframe>`,
	`<base href="https://example.invalid/">`,
	`<meta http-equiv="refresh" content="0;url=javascript:` + payload + `">`,
	`<style>*{background:url(https://example.invalid/x)}</style>`,
	`{{.}}{{template "verdict" .}}`,
	`}}{{`,
	"\u2028\u2029');" + payload + ";//",
	`<!--<script>`,
	`<!--`,
	`]]></script><![CDATA[`,
	`__f__function(){` + payload + `}__f__`,
	`"__f__` + payload + `__f__"`,
	`x{background:expression(` + payload + `)}`,
	`style="width:expression(` + payload + `)"`,
	"nul\x00byte",
	"\x1b[31mred\x1b[0m\x1b]0;title\x07",
	"overlong \xc0\xbcscript\xc0\xbe \xe0\x80\xbc \xf0\x80\x80\xbc",
	`{b}{c}{a|rich}`,
	`\u003cscript\u003e` + payload,
}

// Hostile is the fixed document with a string of the XSS corpus appended
// to every string in it: titles, summaries, causes, evidence, rule ids
// (their prefix still picks the charts), flows, conversation fields, key
// packet labels, timeline events, file names, warnings, the tool's version
// and command line. The strings are dealt in turn starting at XSS[shift],
// so len(XSS) shifts put every string in every field.
func Hostile(shift int) *analysis.Document {
	doc := Fixed()
	Plant(doc, XSS, shift)
	return doc
}

// Plant appends strings of corpus, in turn from corpus[shift], to every
// string and byte slice reachable in doc: exported struct fields, slice
// and array elements, pointed-to values, map keys and values.
func Plant(doc *analysis.Document, corpus []string, shift int) {
	p := &planter{corpus: corpus, next: shift}
	p.walk(reflect.ValueOf(doc).Elem())
}

type planter struct {
	corpus []string
	next   int
}

func (p *planter) hostile() string {
	s := p.corpus[p.next%len(p.corpus)]
	p.next++
	return s
}

func (p *planter) walk(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			v.SetString(v.String() + p.hostile())
		}
	case reflect.Pointer:
		if !v.IsNil() {
			p.walk(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				p.walk(f)
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			if v.CanSet() { // a payload: bytes from the wire
				v.SetBytes(append(slices.Clip(v.Bytes()), p.hostile()...))
			}
			return
		}
		for i := range v.Len() {
			p.walk(v.Index(i))
		}
	case reflect.Map:
		if v.IsNil() || !v.CanSet() {
			return
		}
		planted := reflect.MakeMapWithSize(v.Type(), v.Len())
		keys := v.MapKeys()
		// Sorted, so the same document gets the same strings every time.
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		for _, k := range keys {
			key := reflect.New(v.Type().Key()).Elem()
			key.Set(k)
			p.walk(key)
			val := reflect.New(v.Type().Elem()).Elem()
			val.Set(v.MapIndex(k))
			p.walk(val)
			planted.SetMapIndex(key, val)
		}
		v.Set(planted)
	}
}
