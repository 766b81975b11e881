/* deep: the fixture of the inspection tests (tests/e2e/inspect.rs), kept here
 * rather than in tests/fixtures because its output is compared with golden files.
 *
 * main -> deep_function, which prints "ready" and then blocks in pause(2) until
 * it is killed. Its state is deterministic under `setarch -R` when built
 * -static -no-pie (no ASLR, no dynamic loader), so `ckpt info` prints the same
 * addresses every run; `gdb -batch -ex bt deep core` must show both functions. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile int depth_seen;

__attribute__((noinline)) void deep_function(int depth)
{
	depth_seen = depth;
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	(void)argv;
	deep_function(argc + 41);
	return 0;
}
