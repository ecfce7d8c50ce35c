package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	// 1ms..100ms: by nearest rank the p-th percentile of 100 values is the
	// ceil(p)-th smallest, so p50 = 50ms, p90 = 90ms, p99 = 99ms.
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	ms := time.Millisecond
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", []time.Duration{7 * ms}, 50, 7 * ms},
		{"single p99", []time.Duration{7 * ms}, 99, 7 * ms},
		{"hundred p50", hundred, 50, 50 * ms},
		{"hundred p90", hundred, 90, 90 * ms},
		{"hundred p99", hundred, 99, 99 * ms},
		{"hundred p100", hundred, 100, 100 * ms},
		// Ten values: p50 → rank ceil(5) = 5th; p90 → 9th; p99 → ceil(9.9) = 10th.
		{"ten p50", hundred[:10], 50, 5 * ms},
		{"ten p90", hundred[:10], 90, 9 * ms},
		{"ten p99", hundred[:10], 99, 10 * ms},
		// Four values: p50 → rank 2; p90 → ceil(3.6) = 4th.
		{"four p50", hundred[:4], 50, 2 * ms},
		{"four p90", hundred[:4], 90, 4 * ms},
		// A tiny p never points before the first value.
		{"p tiny", hundred, 0.001, 1 * ms},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(p%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	if got := summarize(nil); got != (latency{}) {
		t.Fatalf("summarize(nil) = %+v, want zero", got)
	}
	// 1..100ms shuffled: summarize must sort before taking percentiles.
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(i+1) * time.Millisecond
	}
	rand.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
	got := summarize(ds)
	want := latency{Count: 100, Mean: 50.5, P50: 50, P90: 90, P99: 99, Max: 100}
	if got != want {
		t.Fatalf("summarize = %+v, want %+v", got, want)
	}
	// Sub-millisecond values keep microsecond precision; negative values
	// (sync before send response) are kept, not clamped.
	got = summarize([]time.Duration{1500 * time.Microsecond, -250 * time.Microsecond})
	want = latency{Count: 2, Mean: 0.625, P50: -0.25, P90: 1.5, P99: 1.5, Max: 1.5}
	if got != want {
		t.Fatalf("summarize = %+v, want %+v", got, want)
	}
}
