// vmclock.go [iterations]: the Go runtime parses the vdso itself at start and
// keeps monotonic deadlines; each iteration prints time.Now() (wall, ns), the
// monotonic time since start (time.Since, from the monotonic reading) and
// sleeps 100 ms. Exits 1 if the monotonic time ever goes back.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	n := 100
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	start := time.Now()
	var prev time.Duration
	fmt.Printf("start pid %d\n", os.Getpid())
	for i := 0; i < n; i++ {
		now := time.Now()
		since := now.Sub(start)
		fmt.Printf("i %d real %d since %d\n", i, now.UnixNano(), since.Nanoseconds())
		if since < prev {
			fmt.Printf("FAIL: the monotonic clock went back at iteration %d\n", i)
			os.Exit(1)
		}
		prev = since
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("done %d\n", n)
}
