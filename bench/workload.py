"""A pre-initialized interpreter for the bench: import numpy, json, decimal and
asyncio, use them a little, print "ready", then follow the workload protocol
of bench/workload.c: each byte read on stdin prints CLOCK_REALTIME in
nanoseconds at once, end of file exits. Started cold with a byte already on
stdin, the first timestamp also says how long the interpreter took to start."""
import asyncio
import decimal
import json
import os
import time

import numpy

numpy.arange(1000).sum()
json.dumps({"a": [1, 2, 3]})
decimal.Decimal("1.1") + decimal.Decimal("2.2")
asyncio.new_event_loop().close()

os.write(1, b"ready\n")
while os.read(0, 1):
    os.write(1, b"%d\n" % time.clock_gettime_ns(time.CLOCK_REALTIME))
