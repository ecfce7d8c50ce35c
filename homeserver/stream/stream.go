// Package stream hands out stream positions and tells readers how far they
// may read. Writers persist concurrently (one per room), so positions are
// committed out of order; a reader that moved past a position still in
// flight would never see that event. Current therefore only advances over
// positions that are committed or abandoned.
package stream

import (
	"sort"
	"sync"
)

// Positions allocates positions of one stream.
type Positions struct {
	mu       sync.Mutex
	next     int64
	inFlight map[int64]int64 // first position of a range -> its length
	current  int64
}

// New starts allocating after last, the highest position already stored.
func New(last int64) *Positions {
	return &Positions{next: last + 1, inFlight: map[int64]int64{}, current: last}
}

// Allocate reserves n consecutive positions and returns the first. Every
// allocation must be followed by Done, committed or not.
func (p *Positions) Allocate(n int) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	first := p.next
	p.next += int64(n)
	p.inFlight[first] = int64(n)
	return first
}

// Done marks an allocation finished (its transaction committed or rolled
// back) and returns the new current position.
func (p *Positions) Done(first int64) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.inFlight, first)
	if len(p.inFlight) == 0 {
		p.current = p.next - 1
	} else {
		starts := make([]int64, 0, len(p.inFlight))
		for s := range p.inFlight {
			starts = append(starts, s)
		}
		sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
		p.current = starts[0] - 1
	}
	return p.current
}

// Current is the highest position at or below which every position is
// committed or abandoned: what readers may read up to.
func (p *Positions) Current() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current
}
