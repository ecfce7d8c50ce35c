//go:build !unix

package federation_test

import "time"

// settle cannot measure the process's CPU time here: it waits a little.
func settle(time.Duration) time.Duration {
	time.Sleep(5 * time.Second)
	return 5 * time.Second
}
