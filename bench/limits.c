/* This machine's limits, each timed REPS times; one line per repetition with
 * the seconds it took:
 *
 *   limits pvr MIB REPS          process_vm_readv of MIB MiB of random data from a
 *                                forked child into an 8 MiB buffer, reused
 *   limits populate MIB REPS     mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE) of MIB
 *                                MiB of fresh memory (then munmap, not timed)
 *   limits write PATH MIB REPS   write() of MIB MiB of random data to a new file PATH
 *   limits fsync PATH MIB REPS   the same, then fsync(); both timed
 *   limits read PATH MIB REPS    read() of PATH (MIB MiB) from the page cache into
 *                                an 8 MiB buffer, after one untimed read to cache it
 *
 * Every written file is fsynced before the next repetition (untimed for
 * "write"), so no write-back is left running into another measurement. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (8UL << 20)

static void die(const char *what)
{
	fprintf(stderr, "limits: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *map_anon(size_t len, int extra)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

static void fill_random(void *p, size_t len)
{
	uint64_t s = 0x9e3779b97f4a7c15ULL, *w = p;
	for (size_t i = 0; i < len / 8; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		w[i] = s;
	}
}

static void pvr(size_t len, int reps)
{
	int ready[2];
	if (pipe(ready))
		die("pipe");
	char *src = map_anon(len, 0);
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fill_random(src, len);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	char c;
	if (read(ready[0], &c, 1) != 1)
		die("child setup");
	char *buf = map_anon(CHUNK, MAP_POPULATE);
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		for (size_t off = 0; off < len; off += CHUNK) {
			struct iovec local = { buf, CHUNK }, remote = { src + off, CHUNK };
			if (process_vm_readv(child, &local, 1, &remote, 1, 0) != (ssize_t)CHUNK)
				die("process_vm_readv");
		}
		printf("%.6f\n", now() - t0);
		fflush(stdout);
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
}

static void populate(size_t len, int reps)
{
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		void *p = map_anon(len, MAP_POPULATE);
		printf("%.6f\n", now() - t0);
		fflush(stdout);
		munmap(p, len);
	}
}

static void write_file(const char *path, size_t len, int reps, int timed_fsync)
{
	char *buf = map_anon(CHUNK, 0);
	fill_random(buf, CHUNK);
	for (int r = 0; r < reps; r++) {
		unlink(path);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0)
			die("open");
		double t0 = now();
		for (size_t off = 0; off < len; off += CHUNK)
			if (write(fd, buf, CHUNK) != (ssize_t)CHUNK)
				die("write");
		if (timed_fsync && fsync(fd))
			die("fsync");
		double t = now() - t0;
		if (fsync(fd) || close(fd))
			die("fsync");
		printf("%.6f\n", t);
		fflush(stdout);
	}
}

static double read_file(const char *path, char *buf)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open");
	double t0 = now();
	ssize_t n;
	while ((n = read(fd, buf, CHUNK)) > 0)
		;
	if (n < 0)
		die("read");
	double t = now() - t0;
	close(fd);
	return t;
}

static void read_cached(const char *path, int reps)
{
	char *buf = map_anon(CHUNK, MAP_POPULATE);
	read_file(path, buf);
	for (int r = 0; r < reps; r++) {
		printf("%.6f\n", read_file(path, buf));
		fflush(stdout);
	}
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "pvr"))
		pvr((size_t)atol(argv[2]) << 20, atoi(argv[3]));
	else if (argc == 4 && !strcmp(argv[1], "populate"))
		populate((size_t)atol(argv[2]) << 20, atoi(argv[3]));
	else if (argc == 5 && !strcmp(argv[1], "write"))
		write_file(argv[2], (size_t)atol(argv[3]) << 20, atoi(argv[4]), 0);
	else if (argc == 5 && !strcmp(argv[1], "fsync"))
		write_file(argv[2], (size_t)atol(argv[3]) << 20, atoi(argv[4]), 1);
	else if (argc == 5 && !strcmp(argv[1], "read"))
		read_cached(argv[2], atoi(argv[4]));
	else {
		fprintf(stderr, "usage: limits pvr|populate MIB REPS | write|fsync|read PATH MIB REPS\n");
		return 2;
	}
	return 0;
}
