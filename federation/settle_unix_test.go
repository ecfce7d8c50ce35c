//go:build unix

package federation_test

import (
	"syscall"
	"time"
)

// settle waits until this process (the test servers) has been nearly idle
// for a second, at most max, and returns how long it waited: benchmarks
// call it so that background work set off by their setup is not timed
// with what they measure.
func settle(max time.Duration) time.Duration {
	start := time.Now()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for time.Since(start) < max {
		before := cpu()
		time.Sleep(time.Second)
		if cpu()-before < 100*time.Millisecond {
			break
		}
	}
	return time.Since(start)
}
