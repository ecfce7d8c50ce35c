package stream

import "testing"

func TestCurrentWaitsForEarlierWriters(t *testing.T) {
	p := New(10)
	a := p.Allocate(2) // 11, 12
	b := p.Allocate(1) // 13
	if a != 11 || b != 13 {
		t.Fatalf("allocated %d and %d", a, b)
	}
	if got := p.Done(b); got != 10 {
		t.Fatalf("current %d after the later writer finished first, want 10", got)
	}
	if got := p.Done(a); got != 13 {
		t.Fatalf("current %d after both finished, want 13", got)
	}
	c := p.Allocate(1)
	if p.Current() != 13 || c != 14 {
		t.Fatalf("current %d, next %d", p.Current(), c)
	}
	p.Done(c)
	if p.Current() != 14 {
		t.Fatalf("current %d, want 14", p.Current())
	}
}
