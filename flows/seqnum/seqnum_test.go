package seqnum

import "testing"

func TestCompareAcrossWrap(t *testing.T) {
	tests := []struct {
		v, w     Value
		lessThan bool
		sub      int64
	}{
		{1, 2, true, -1},
		{2, 1, false, 1},
		{0xfffffff0, 0x10, true, -0x20},
		{0x10, 0xfffffff0, false, 0x20},
		{5, 5, false, 0},
		{0, 0x7fffffff, true, -0x7fffffff},
	}
	for _, tt := range tests {
		if got := tt.v.LessThan(tt.w); got != tt.lessThan {
			t.Errorf("%#x.LessThan(%#x) = %v, want %v", tt.v, tt.w, got, tt.lessThan)
		}
		if got := tt.v.Sub(tt.w); got != tt.sub {
			t.Errorf("%#x.Sub(%#x) = %d, want %d", tt.v, tt.w, got, tt.sub)
		}
	}
}

func TestInRange(t *testing.T) {
	if !Value(0xfffffffe).Add(4).InRange(0xfffffff0, 0x10) {
		t.Error("value just past the wrap should be inside a range that spans it")
	}
	if Value(0x10).InRange(0xfffffff0, 0x10) {
		t.Error("the end of a range is exclusive")
	}
	if got := Max(0xffffffff, 2); got != 2 {
		t.Errorf("Max across wrap = %#x, want 2", got)
	}
}
