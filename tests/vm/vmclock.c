/* vmclock [iterations]: a process to move between kernels and boots. Each
 * iteration reads CLOCK_MONOTONIC, _COARSE, CLOCK_BOOTTIME, CLOCK_REALTIME
 * (through the vdso, as libc calls them), CLOCK_MONOTONIC by the raw system call,
 * gettimeofday() and time(), prints them in ns (time() in s), sleeps 100 ms.
 * It fails (exit 1) if a monotonic clock ever goes back, whether the vdso or the
 * system call reads it; the host's checker (tests/vm/main.rs) checks the log
 * again across the freeze. Line-buffered, so the log holds every line written
 * before the freeze. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long ns(clockid_t c)
{
	struct timespec t;
	if (clock_gettime(c, &t)) {
		perror("clock_gettime");
		exit(1);
	}
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long long sys_ns(clockid_t c)
{
	struct timespec t;
	if (syscall(SYS_clock_gettime, c, &t)) {
		perror("clock_gettime (system call)");
		exit(1);
	}
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100;
	long long pm = 0, pc = 0, pb = 0, ps = 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("start pid %d\n", (int)getpid());
	for (long i = 0; i < n; i++) {
		long long m = ns(CLOCK_MONOTONIC), c = ns(CLOCK_MONOTONIC_COARSE), b = ns(CLOCK_BOOTTIME);
		long long r = ns(CLOCK_REALTIME), s = sys_ns(CLOCK_MONOTONIC);
		struct timeval tv;
		gettimeofday(&tv, NULL);
		long long g = tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL;
		long t = (long)time(NULL);
		printf("i %ld mono %lld coarse %lld boot %lld real %lld sysmono %lld gtod %lld time %ld\n", i, m, c, b, r, s, g, t);
		if (m < pm || c < pc || b < pb || s < ps) {
			printf("FAIL: a monotonic clock went back at iteration %ld\n", i);
			return 1;
		}
		pm = m, pc = c, pb = b, ps = s;
		struct timespec d = {0, 100 * 1000 * 1000};
		while (nanosleep(&d, &d))
			;
	}
	printf("done %ld\n", n);
	return 0;
}
