/* Workload programs of the bench, one per mode:
 *
 *   workload small              nothing but the C runtime (a small dynamic program)
 *   workload mem MIB            MIB MiB of random (incompressible) data, every page written
 *   workload text MIB PCT       MIB MiB in which PCT % of the pages (spread evenly) hold
 *                               random data and the others lines of a made-up
 *                               request log (text LZ4 shrinks about 4x)
 *   workload sparse GIB PCT     GIB GiB reserved with MAP_NORESERVE, PCT % of its pages
 *                               written with random data (spread evenly)
 *   workload vmas N             N one-page VMAs, alternately read-write and read-only
 *                               so that the kernel cannot merge them
 *   workload threads N          N threads in all: the others wait on a condition
 *                               variable (futex) or sleep, none ever wakes
 *
 * Protocol (the same for every workload of the bench): once set up, print
 * "ready" and block in read(0). Each byte read makes the program print its
 * CLOCK_REALTIME in nanoseconds at once; end of file makes it exit 0. The byte
 * 'w' instead runs a fixed unit of work (CPU and a 64 KiB buffer, none of the
 * workload's memory) and prints "work NS", its CLOCK_MONOTONIC duration. Frozen
 * while blocked in that read, the resumed program restarts the read on the
 * resumer's stdin, so the first thing it does is print its clock. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

static void die(const char *what)
{
	fprintf(stderr, "workload: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void say(const char *s)
{
	if (write(1, s, strlen(s)) < 0)
		exit(1);
}

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void fill_random(void *p, size_t len, uint64_t *seed)
{
	uint64_t *w = p;
	for (size_t i = 0; i < len / 8; i++)
		w[i] = xorshift64(seed);
}

static void *map_anon(size_t len, int extra_flags)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

static void setup_mem(size_t mib)
{
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	fill_random(map_anon(mib << 20, 0), mib << 20, &seed);
}

static void setup_text(size_t mib, size_t pct)
{
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	size_t pages = (mib << 20) / PAGE, every = pct ? 100 / pct : 0, n = 0;
	char *p = map_anon(mib << 20, 0);
	for (size_t i = 0; i < pages; i++) {
		char *pg = p + i * PAGE;
		if (every && i % every == 0) {
			fill_random(pg, PAGE, &seed);
			continue;
		}
		size_t at = 0;
		while (at < PAGE) {
			char line[128];
			int len = snprintf(line, sizeof line, "%010zu INFO GET /api/v1/items/%zu user=u%zu status=200 bytes=%zu\n",
					   n, n % 9973, n % 311, (n * 37) % 65536);
			size_t k = (size_t)len < PAGE - at ? (size_t)len : PAGE - at;
			memcpy(pg + at, line, k);
			at += k;
			n++;
		}
	}
}

static void setup_sparse(size_t gib, size_t pct)
{
	uint64_t seed = 0x2545f4914f6cdd1dULL;
	size_t pages = (gib << 30) / PAGE;
	char *p = map_anon(gib << 30, MAP_NORESERVE);
	for (size_t i = 0; i < pages; i += 100 / pct)
		fill_random(p + i * PAGE, PAGE, &seed);
}

static void setup_vmas(size_t n)
{
	uint64_t seed = 0x853c49e6748fea9bULL;
	char *p = map_anon(n * PAGE, 0);
	fill_random(p, n * PAGE, &seed);
	for (size_t i = 1; i < n; i += 2)
		if (mprotect(p + i * PAGE, PAGE, PROT_READ))
			die("mprotect");
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static pthread_cond_t started_cv = PTHREAD_COND_INITIALIZER;
static int started;

static void *waiter(void *sleeps)
{
	pthread_mutex_lock(&lock);
	started++;
	pthread_cond_signal(&started_cv);
	if (!sleeps) {
		for (;;)
			pthread_cond_wait(&never, &lock);
	}
	pthread_mutex_unlock(&lock);
	for (;;)
		sleep(3600);
	return NULL;
}

static void setup_threads(int n)
{
	for (long i = 1; i < n; i++) {
		pthread_t t;
		if ((errno = pthread_create(&t, NULL, waiter, (void *)(i & 1))))
			die("pthread_create");
	}
	pthread_mutex_lock(&lock);
	while (started < n - 1)
		pthread_cond_wait(&started_cv, &lock);
	pthread_mutex_unlock(&lock);
}

static long long now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The same work each time: 1M xorshift steps written round a 64 KiB buffer. */
static long long work_unit(void)
{
	static uint64_t buf[8192];
	uint64_t seed = 0x94d049bb133111ebULL;
	long long t0 = now_ns(CLOCK_MONOTONIC);
	for (size_t i = 0; i < (1UL << 20); i++)
		buf[i % 8192] ^= xorshift64(&seed);
	long long t = now_ns(CLOCK_MONOTONIC) - t0;
	return buf[seed % 8192] == 42 ? t + 1 : t; /* keeps the loop */
}

/* Print CLOCK_REALTIME for every byte on stdin; exit at end of file. */
static void serve(void)
{
	char c, line[32];
	for (;;) {
		ssize_t r = read(0, &c, 1);
		if (r == 0)
			exit(0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("read");
		}
		if (c == 'w')
			snprintf(line, sizeof line, "work %lld\n", work_unit());
		else
			snprintf(line, sizeof line, "%lld\n", now_ns(CLOCK_REALTIME));
		say(line);
	}
}

int main(int argc, char **argv)
{
	/* Dies with whoever started it (the bench, or the resumer after a resume). */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	const char *mode = argc > 1 ? argv[1] : "small";
	long a = argc > 2 ? atol(argv[2]) : 0, b = argc > 3 ? atol(argv[3]) : 0;
	if (!strcmp(mode, "mem"))
		setup_mem(a);
	else if (!strcmp(mode, "text"))
		setup_text(a, b);
	else if (!strcmp(mode, "sparse"))
		setup_sparse(a, b);
	else if (!strcmp(mode, "vmas"))
		setup_vmas(a);
	else if (!strcmp(mode, "threads"))
		setup_threads(a);
	else if (strcmp(mode, "small")) {
		fprintf(stderr, "workload: unknown mode %s\n", mode);
		return 2;
	}
	say("ready\n");
	serve();
}
