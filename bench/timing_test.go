package main

import (
	"math"
	"testing"
	"time"
)

func TestSeparability(t *testing.T) {
	for _, tt := range []struct {
		name string
		a, b []time.Duration
		want float64
	}{
		{"disjoint", []time.Duration{1, 2, 3}, []time.Duration{4, 5, 6}, 1},
		{"disjoint, b first", []time.Duration{4, 5, 6}, []time.Duration{1, 2, 3}, 1},
		{"same samples", []time.Duration{1, 2, 3}, []time.Duration{1, 2, 3}, 0.5},
		{"interleaved", []time.Duration{1, 3}, []time.Duration{2, 4}, 0.75},
		{"ties stay together", []time.Duration{1, 1, 2}, []time.Duration{1, 2, 2}, 2.0 / 3},
		{"unequal sizes", []time.Duration{1}, []time.Duration{1, 2, 3, 4}, 0.875},
		{"empty", nil, []time.Duration{1}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := separability(tt.a, tt.b); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("separability(%v, %v) = %v; want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}
