package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Unix(1_700_000_000, 0)} }
func limiter(rate float64, burst int) (*Limiter, *clock) {
	c := newClock()
	l := New(rate, burst)
	l.SetClock(c.now)
	return l, c
}

func TestBurstThenRefill(t *testing.T) {
	l, c := limiter(2, 3) // 3 at once, then one every 500ms
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("4th request: ok=%v wait=%v, want refused with 500ms", ok, wait)
	}
	// A refused request takes no token: waiting what it said is enough.
	c.advance(wait)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refused after waiting retry_after")
	}
	c.advance(200 * time.Millisecond)
	if ok, wait := l.Allow("a"); ok || wait != 300*time.Millisecond {
		t.Fatalf("partial refill: ok=%v wait=%v, want refused with 300ms", ok, wait)
	}
	// Refill never exceeds the burst.
	c.advance(time.Hour)
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d after an hour refused", i+1)
		}
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("bucket refilled beyond its burst")
	}
}

func TestKeysAreIndependent(t *testing.T) {
	l, _ := limiter(1, 1)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("a refused")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("a allowed twice")
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("b refused because of a")
	}
}

func TestSlowRate(t *testing.T) {
	l, _ := limiter(0.1, 1) // one per 10s
	l.Allow("x")
	if ok, wait := l.Allow("x"); ok || wait != 10*time.Second {
		t.Fatalf("ok=%v wait=%v, want 10s", ok, wait)
	}
}

func TestDisabledAndNil(t *testing.T) {
	for _, l := range []*Limiter{New(0, 10), New(1, 0), nil} {
		if l != nil {
			t.Fatalf("New with no limit returned %+v, want nil", l)
		}
		for i := 0; i < 1000; i++ {
			if ok, _ := l.Allow("k"); !ok {
				t.Fatal("nil limiter refused")
			}
		}
		if l.Len() != 0 {
			t.Fatal("nil limiter tracks keys")
		}
	}
}

func TestPruneForgetsFullBuckets(t *testing.T) {
	l, c := limiter(1, 2)
	for i := 0; i < 100; i++ {
		l.Allow(fmt.Sprint("ip", i))
	}
	if l.Len() != 100 {
		t.Fatalf("tracking %d keys, want 100", l.Len())
	}
	c.advance(2 * pruneEvery)
	l.Allow("new")
	if l.Len() != 1 {
		t.Fatalf("after every bucket refilled, tracking %d keys, want 1", l.Len())
	}
}

func TestBoundedMemory(t *testing.T) {
	l, _ := limiter(0.001, 1)
	for i := 0; i < maxBuckets+10; i++ {
		l.Allow(fmt.Sprint(i))
	}
	if l.Len() > maxBuckets {
		t.Fatalf("tracking %d keys, more than %d", l.Len(), maxBuckets)
	}
}

func TestConcurrent(t *testing.T) {
	// Under -race: many goroutines on one key take exactly burst tokens.
	l, _ := limiter(0.0001, 50)
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if ok, _ := l.Allow("shared"); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 50 {
		t.Fatalf("%d requests allowed, want exactly the burst of 50", allowed)
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(1e9, 1<<30)
	for i := 0; i < b.N; i++ {
		l.Allow("key")
	}
}
