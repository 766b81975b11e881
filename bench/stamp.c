/* Linked statically: prints its CLOCK_REALTIME in nanoseconds and exits. The
 * bench times fork+exec with it the same way it times a resume. */
#include <stdio.h>
#include <time.h>

int main(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	printf("%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
	return 0;
}
