// Package jsonappendtest helps test jsonappend's users: it fills records
// with random values, every field set or not, so a test can hold an
// appender to the encoder's bytes.
package jsonappendtest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"wiremortem/internal/jsonappend"
)

var (
	hostileStrings = []string{"", "a", "client", "SYN,ACK", "capture.pcap", "<script>&amp;</script>", "a<b", "a>b", "a&b", "\"quoted\" \\ back", "a\xffb", "\xed\xa0\x80", "é\xc3", "\u2028\u2029", "\x00\x01\x1f\x7f\n\t\r\b\f", "日本語 \U0001F600", "/tmp/dir with space/x.pcap"}
	locations      = []*time.Location{time.UTC, time.FixedZone("", 8*3600), time.FixedZone("odd", -(3*3600 + 30*60 + 17))}
	addrPorts      = []netip.AddrPort{{}, netip.MustParseAddrPort("10.0.0.1:80"), netip.MustParseAddrPort("[2001:db8::1]:443"), netip.MustParseAddrPort("[::ffff:10.1.2.3]:8080"), netip.MustParseAddrPort("[fe80::1%eth0]:22")}
)

// Fill sets every exported field of *v, recursively, to values chosen at
// random: zero or not, nil or empty or short lists, the strings that need
// escaping, times in odd zones; with badYears, sometimes a time the
// encoder cannot write.
func Fill[T any](r *rand.Rand, v *T, badYears bool) {
	fill(&filler{r: r, badYears: badYears}, reflect.ValueOf(v).Elem(), 0)
}

type filler struct {
	r        *rand.Rand
	badYears bool
}

// fill sets v to a random value of its type.
func fill(f *filler, v reflect.Value, depth int) {
	r := f.r
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		var t time.Time
		switch r.IntN(6) {
		case 0: // zero
		case 1:
			if !f.badYears {
				break
			}
			t = time.Date(10000+r.IntN(10), 1, 1, 0, 0, 0, 0, time.UTC) // the encoder cannot write it
		default:
			t = time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(locations[r.IntN(len(locations))])
			if r.IntN(3) == 0 {
				t = t.Truncate(time.Second)
			}
		}
		v.Set(reflect.ValueOf(t))
		return
	case reflect.TypeFor[netip.AddrPort]():
		v.Set(reflect.ValueOf(addrPorts[r.IntN(len(addrPorts))]))
		return
	}
	number := func() int64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return 1 + r.Int64N(3)
		}
		return r.Int64N(1<<40) - 1<<20
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(number())
	case reflect.Uint8:
		v.SetUint(uint64(r.IntN(2))) // Side
	case reflect.String:
		v.SetString(hostileStrings[r.IntN(len(hostileStrings))])
	case reflect.Pointer:
		if r.IntN(3) > 0 && depth < 6 {
			p := reflect.New(v.Type().Elem())
			fill(f, p.Elem(), depth+1)
			v.Set(p)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(f, v.Field(i), depth+1)
			}
		}
	case reflect.Array:
		for i := range v.Len() {
			fill(f, v.Index(i), depth+1)
		}
	case reflect.Slice:
		switch r.IntN(4) {
		case 0: // nil
		case 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			n := 1 + r.IntN(4)
			s := reflect.MakeSlice(v.Type(), n, n)
			for i := range n {
				fill(f, s.Index(i), depth+1)
			}
			v.Set(s)
		}
	case reflect.Map:
		switch r.IntN(3) {
		case 0: // nil
		case 1:
			v.Set(reflect.MakeMap(v.Type()))
		default:
			m := reflect.MakeMap(v.Type())
			for range 1 + r.IntN(5) {
				k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
				fill(f, k, depth+1)
				fill(f, e, depth+1)
				m.SetMapIndex(k, e)
			}
			v.Set(m)
		}
	default:
		panic("fill: no case for " + v.Type().String())
	}
}

// Check fills 3,000 records of type T at random (Fill) and holds
// appendJSON to the encoder's bytes on each (Same): a field added to T and
// not to its appender fails here. One record in 20 may hold a time the
// encoder cannot write; then both must fail.
func Check[T any](t *testing.T, seed uint64, appendJSON func(*T, *jsonappend.Writer)) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed+1))
	compared := 0
	for i := range 3000 {
		v := new(T)
		Fill(r, v, i%20 == 0)
		w := &jsonappend.Writer{}
		appendJSON(v, w)
		ok, encoded := Same(t, fmt.Sprintf("random record %d", i), v, w)
		if !ok {
			return
		}
		if encoded {
			compared++
		}
	}
	if compared < 2700 {
		t.Errorf("only %d of 3000 random records could be encoded", compared)
	}
}

// Same fails t unless w, what an appender wrote of v, holds the encoder's
// bytes for v, or both failed. It reports whether they agree, and whether
// the encoder could write v.
func Same(t *testing.T, what string, v any, w *jsonappend.Writer) (ok, encoded bool) {
	t.Helper()
	want, wantErr := jsonv2.Marshal(v, jsonappend.Options())
	if (wantErr != nil) != (w.Err != nil) {
		t.Errorf("%s: encoder error %v, appender error %v", what, wantErr, w.Err)
		return false, false
	}
	if wantErr != nil {
		return true, false
	}
	if !bytes.Equal(w.B, want) {
		at := 0
		for at < min(len(w.B), len(want)) && w.B[at] == want[at] {
			at++
		}
		from := max(0, at-60)
		t.Errorf("%s: the appender differs from the encoder at byte %d:\n got %s\nwant %s", what, at, w.B[from:min(len(w.B), at+60)], want[from:min(len(want), at+60)])
		return false, true
	}
	return true, true
}
