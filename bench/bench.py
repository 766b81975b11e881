"""ckpt's speed against this machine's limits, both measured in the same run.

Limits (bench/limits.c and bench/stamp.c, compiled here with cc; each the
median of a few repetitions, throughputs in GB/s = 1e9 bytes/s):
  pvr          process_vm_readv of 1 GiB from another process
  write        write() of 1 GiB to a file on the disk the resume files go to
  write+fsync  the same followed by fsync()
  cached read  read() of a 1 GiB file that is in the page cache
  populate     mmap(MAP_POPULATE) of 1 GiB of fresh anonymous memory
  fork+exec    posix_spawn of a tiny static binary until it prints its clock (ms),
               timed exactly as a resume is; and 8 of them started at once

Workloads (bench/workload.c, bench/workload.py, bench/Warm.java): each is
started fresh, says "ready" and blocks in read(0) on a pipe. For each of N runs
it is frozen (`ckpt freeze PID -o FILE -v`, FILE in a temporary directory on
disk, never tmpfs), the original is reaped, and FILE is run with a stdin pipe
already holding one byte: the resumed program's restarted read returns and it
prints CLOCK_REALTIME at once. Measured per run:
  freeze ms    wall time of `ckpt freeze`
  stopped ms   how long the target was stopped, and fsync ms: both from
               `ckpt freeze -v`'s last line
  resume ms    from just before the exec of FILE to the clock the resumed
               process prints
  file MiB     size of FILE; peak RSS MiB of `ckpt freeze` (wait4 ru_maxrss)

Ratios (1.0 = as fast as the limit; higher is faster than the limit):
  freeze/limit  file bytes / freeze time, over min(pvr, write+fsync)
  resume/limit  file bytes / resume time, over min(populate, cached read), for the
                memory workloads; for the others (whose files are small) the
                fork+exec time plus the file's bytes at that speed, over the
                resume time, per run and then the median: fork+exec is timed
                again just before each of their resumes (8 at once for the 8
                parallel resumes), as the load of a shared machine drifts
  python        cold start (spawn until the first timestamp, imports included)
                over resume time
  python-hint   the same for the python workload profiled with `ckpt profile` (one
                answer, a 2 s window) and then resumed lazily with that hint
  threads-64    its resume time minus that of the single-threaded small program
  compress-*    frozen with --compress (LZ4): compress-1g the random pages of
                mem-1g, compress-1g-half-text 1 GiB of which half the pages are
                random and half text (its uncompressed row: mem-1g-half-text),
                python-compress the python workload; file MiB is the compressed file
  lazy-1g/4g    the mem workloads resumed with CKPT_LAZY=1: first instruction (resume
                ms), until every page is in (populated ms), and how much slower the
                program's own work runs meanwhile (slowdown; see lazy_resume)

Results: a table on stdout, target/bench/runs.csv (one row per workload and
run), target/bench/summary.csv, target/bench/limits.csv and a plot
target/bench/ratios.png. A failed freeze or resume is printed with its error
and its cell is left empty: no number is made up.

Environment: N (runs per workload, default 5), BENCH_ONLY=name,name (subset of
workloads), BENCH_SKIP_BIG=1 (no 4 GiB workloads), BENCH_TMPDIR (where the
resume files go; default target/bench, which must not be tmpfs).

Every process the bench starts is tracked by PID (the bench is a child
subreaper, so orphans come back to it), waited for with a timeout, and killed
on any exit path, an interrupt included.
"""
import csv
import ctypes
import importlib.util
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = ROOT / "target" / "bench"
CKPT = ROOT / "target" / "release" / "ckpt"
GIB = 1 << 30
MIB = 1 << 20
LIMIT_MIB = 1024


class BenchError(Exception):
    """A measurement that failed; its message is printed and its cell left empty."""


# ---------------------------------------------------------------- processes

LIVE = set()  # PIDs started and not yet reaped


def become_subreaper():
    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def spawn(argv, stdin=None, stdout=None, stderr=None, session=True, env=None):
    """posix_spawn argv with the given fds as 0, 1, 2 (others are close-on-exec)."""
    actions = [(os.POSIX_SPAWN_DUP2, fd, target)
               for target, fd in enumerate((stdin, stdout, stderr)) if fd is not None]
    pid = os.posix_spawnp(str(argv[0]), [str(a) for a in argv], env or os.environ,
                         file_actions=actions, setsid=session)
    LIVE.add(pid)
    return pid


def wait_exit(pid, timeout):
    """Wait up to timeout s for child pid; (status, rusage) or None if still running."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = None
    try:
        if pidfd is not None:
            select.select([pidfd], [], [], timeout)
        got, status, rusage = os.wait4(pid, os.WNOHANG)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    if got != pid:
        return None
    LIVE.discard(pid)
    return status, rusage


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    kids = [int(k) for k in f.read().split()]
                out += kids
                todo += kids
        except OSError:
            pass
    return out


def kill(pid):
    """SIGKILL pid and everything below it, then reap what is ours (bounded)."""
    for p in [pid] + descendants(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if pid in LIVE:
        wait_exit(pid, 10)
    reap_orphans()


def children():
    out = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            out += [int(k) for k in f.read().split()]
    return out


def reap_orphans():
    """Kill and reap processes orphaned below us (we are their subreaper)."""
    for p in children():
        if p not in LIVE:
            try:
                os.kill(p, signal.SIGKILL)
                os.waitpid(p, os.WNOHANG)
            except (ProcessLookupError, ChildProcessError):
                pass


def cleanup():
    for pid in list(LIVE):
        kill(pid)
    deadline = time.monotonic() + 10
    while children() and time.monotonic() < deadline:
        reap_orphans()
        time.sleep(0.05)


class Reader:
    """Lines from a pipe, with a timeout."""

    def __init__(self, fd, what):
        self.fd, self.what, self.buf = fd, what, b""

    def line(self, timeout):
        """The next line; None at end of file."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.what}: no output within {timeout:.0f} s")
            if select.select([self.fd], [], [], left)[0]:
                chunk = os.read(self.fd, 4096)
                if not chunk:
                    return None
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")


def run_lines(argv, timeout):
    """Run argv to its end (bounded); its stdout lines."""
    r, w = os.pipe()
    pid = spawn(argv, stdout=w)
    os.close(w)
    lines, reader = [], Reader(r, Path(argv[0]).name)
    try:
        while (line := reader.line(timeout)) is not None:
            lines.append(line)
    finally:
        os.close(r)
        done = wait_exit(pid, 10)
        if done is None:
            kill(pid)
    if done is None or done[0] != 0:
        raise BenchError(f"{' '.join(map(str, argv))} failed")
    return lines


def exit_text(status):
    code = os.waitstatus_to_exitcode(status)
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"


def realtime_ns():
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


def tail(path, n=3):
    try:
        return " | ".join(Path(path).read_text(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return ""


# ---------------------------------------------------------------- setup

def check_disk(d):
    kind = subprocess.run(["stat", "-f", "-c", "%T", str(d)], capture_output=True,
                          text=True, check=True).stdout.strip()
    if kind in ("tmpfs", "ramfs"):
        sys.exit(f"bench: {d} is on {kind}; set BENCH_TMPDIR to a directory on disk")
    return kind


def compile_helpers(tmp):
    cc = shutil.which("cc") or sys.exit("bench: cc not found (make deps installs it)")
    bins = {}
    for name, src, flags in (("workload", "workload.c", ["-pthread"]),
                             ("limits", "limits.c", []),
                             ("stamp", "stamp.c", ["-static"])):
        bins[name] = tmp / name
        subprocess.run([cc, "-O2", "-Wall", "-o", str(bins[name]), str(BENCH / src)] + flags,
                       check=True, timeout=120)
    return bins


def numpy_or_reason():
    """None when numpy imports in this python (installed with pip if missing), else why not."""
    if importlib.util.find_spec("numpy"):
        return None
    print("numpy missing for", sys.executable, "- installing it with pip", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "numpy"],
                       check=True, timeout=600, stdin=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-c", "import numpy"], check=True, timeout=60)
        return None
    except (subprocess.SubprocessError, OSError) as e:
        return f"numpy not importable by {sys.executable} and pip failed ({e})"


def java_or_reason(tmp):
    """Compile bench/Warm.java; None when it can run, else why not."""
    if not (shutil.which("java") and shutil.which("javac")):
        return "java/javac not installed"
    try:
        subprocess.run(["javac", "-d", str(tmp), str(BENCH / "Warm.java")], check=True,
                       timeout=300, capture_output=True)
        return None
    except (subprocess.SubprocessError, OSError) as e:
        return f"javac failed ({e})"


# ---------------------------------------------------------------- limits

def median_of(lines):
    return statistics.median(float(x) for x in lines)


def gbps(seconds, nbytes=LIMIT_MIB * MIB):
    return nbytes / seconds / 1e9


def limit_pvr(bins, tmp):
    return gbps(median_of(run_lines([bins["limits"], "pvr", LIMIT_MIB, 5], 300)))


def limit_write(bins, tmp):
    f = tmp / "limit.dat"
    return gbps(median_of(run_lines([bins["limits"], "write", f, LIMIT_MIB, 5], 600)))


def limit_write_fsync(bins, tmp):
    f = tmp / "limit.dat"
    return gbps(median_of(run_lines([bins["limits"], "fsync", f, LIMIT_MIB, 5], 600)))


def limit_cached_read(bins, tmp):
    f = tmp / "limit.dat"  # left by limit_write_fsync
    try:
        return gbps(median_of(run_lines([bins["limits"], "read", f, LIMIT_MIB, 5], 300)))
    finally:
        f.unlink(missing_ok=True)


def limit_populate(bins, tmp):
    return gbps(median_of(run_lines([bins["limits"], "populate", LIMIT_MIB, 5], 300)))


def time_to_stamps(argvs, timeout=30):
    """Start every argv at once, each with one byte on stdin; ms from just before
    the first exec until the last printed its CLOCK_REALTIME (a line of digits).
    Their stderr goes to STDERR_LOG, emptied first."""
    STDERR_LOG.seek(0)
    STDERR_LOG.truncate()
    procs = []
    try:
        t0 = None
        for argv in argvs:
            rin, win = os.pipe()
            os.write(win, b"x")
            rout, wout = os.pipe()
            if t0 is None:
                t0 = realtime_ns()
            pid = spawn(argv, stdin=rin, stdout=wout, stderr=STDERR_LOG.fileno())
            os.close(rin)
            os.close(wout)
            procs.append((pid, win, Reader(rout, Path(argv[0]).name)))
        stamps = []
        for pid, win, reader in procs:
            line = reader.line(timeout)
            while line is not None and not line.isdigit():
                line = reader.line(timeout)
            if line is None:
                raise BenchError(f"{reader.what} exited without printing its clock")
            stamps.append(int(line))
        return (max(stamps) - t0) / 1e6
    finally:
        finish(procs)


def finish(procs):
    """Close each process's stdin (the workloads exit at end of file), reap them
    with a bounded wait, kill what is left; raise if one did not exit 0."""
    bad = []
    for pid, win, reader in procs:
        os.close(win)
    for pid, win, reader in procs:
        done = wait_exit(pid, 15)
        os.close(reader.fd)
        if done is None:
            kill(pid)
            bad.append(f"pid {pid} did not exit at end of input")
        elif done[0] != 0:
            bad.append(exit_text(done[0]))
    reap_orphans()
    if bad:
        raise BenchError("; ".join(bad))


STDERR_LOG = None  # stderr of resumed processes and fork+exec probes


def limit_fork_exec(bins, tmp, reps=21):
    return statistics.median(time_to_stamps([[bins["stamp"]]]) for _ in range(reps))


def limit_fork_exec_x8(bins, tmp, reps=7):
    return statistics.median(time_to_stamps([[bins["stamp"]]] * 8) for _ in range(reps))


def measure_limits(bins, tmp):
    limits = {}
    for name, unit, fn in (("pvr", "GB/s", limit_pvr),
                           ("populate", "GB/s", limit_populate),
                           ("write", "GB/s", limit_write),
                           ("write+fsync", "GB/s", limit_write_fsync),
                           ("cached read", "GB/s", limit_cached_read),
                           ("fork+exec", "ms", limit_fork_exec),
                           ("fork+exec x8", "ms", limit_fork_exec_x8)):
        limits[name] = fn(bins, tmp)
        print(f"  {name:<13} {limits[name]:8.3f} {unit}", flush=True)
    return limits


# ---------------------------------------------------------------- workloads

class Workload:
    """A program to freeze and resume. kind: "mem" (ratios by bytes), "small"
    (resume against fork+exec), "x8" (8 resumes at once), "leave" (freeze with
    --leave-running only), "compress" (frozen with --compress, resumed eagerly),
    "lazy" (resumed with CKPT_LAZY=1: lazy_resume), "hint"
    (profiled with `ckpt profile` first, then resumed lazily with its hint)."""

    def __init__(self, name, argv, kind="small", ready_s=120, skip=None):
        self.name, self.argv, self.kind, self.ready_s, self.skip = name, argv, kind, ready_s, skip


def workloads(bins, tmp, skip_big):
    wl = bins["workload"]
    big = "BENCH_SKIP_BIG=1" if skip_big else None
    py = [sys.executable, BENCH / "workload.py"]
    java = ["java", "-XX:+UseG1GC", "-cp", tmp, "Warm"]
    return [
        Workload("small", [wl, "small"]),
        Workload("mem-64m", [wl, "mem", 64], "mem"),
        Workload("mem-256m", [wl, "mem", 256], "mem"),
        Workload("mem-1g", [wl, "mem", 1024], "mem"),
        Workload("mem-4g", [wl, "mem", 4096], "mem", skip=big),
        Workload("sparse-16g", [wl, "sparse", 16, 1], "mem"),
        Workload("vmas-10k", [wl, "vmas", 10000]),
        Workload("threads-8", [wl, "threads", 8]),
        Workload("threads-64", [wl, "threads", 64]),
        Workload("python", py, skip=LazyReason(numpy_or_reason)),
        Workload("python-hint", py, "hint", skip=LazyReason(numpy_or_reason)),
        Workload("java", java, skip=LazyReason(lambda: java_or_reason(tmp))),
        Workload("resume-x8", [wl, "small"], "x8"),
        Workload("lazy-1g", [wl, "mem", 1024], "lazy"),
        Workload("lazy-4g", [wl, "mem", 4096], "lazy", skip=big),
        Workload("leave-running-1g", [wl, "mem", 1024], "leave"),
        Workload("leave-running-4g", [wl, "mem", 4096], "leave", skip=big),
        # `ckpt freeze --compress` next to the same workloads uncompressed: the
        # random pages of mem-1g (stored raw), 1 GiB half random half log text,
        # and the python workload.
        Workload("compress-1g", [wl, "mem", 1024], "compress"),
        Workload("mem-1g-half-text", [wl, "text", 1024, 50], "mem"),
        Workload("compress-1g-half-text", [wl, "text", 1024, 50], "compress"),
        Workload("python-compress", py, "compress", skip=LazyReason(numpy_or_reason)),
    ]


class LazyReason:
    """A skip reason found only when the workload is about to run."""

    def __init__(self, fn):
        self.fn, self.done, self.value = fn, False, None

    def __call__(self):
        if not self.done:
            self.value, self.done = self.fn(), True
        return self.value


class Running:
    """A started workload: its pid, the write end of its stdin, its stdout."""

    def __init__(self, argv, ready_s, log):
        rin, self.stdin = os.pipe()
        rout, wout = os.pipe()
        self.pid = spawn(argv, stdin=rin, stdout=wout, stderr=log.fileno())
        os.close(rin)
        os.close(wout)
        self.out = Reader(rout, f"{Path(str(argv[0])).name} {argv[1] if len(argv) > 1 else ''}")
        try:
            while True:
                line = self.out.line(ready_s)
                if line is None:
                    raise BenchError("it exited")
                if line.startswith("ready"):
                    break
        except BenchError as e:
            self.stop()
            raise BenchError(f"workload did not start: {e}: {tail(log.name)}")

    def stop(self):
        os.close(self.stdin)
        os.close(self.out.fd)
        if self.pid in LIVE and wait_exit(self.pid, 0) is None:
            kill(self.pid)


FREEZE_LINE = re.compile(r"total ([\d.]+) ms, target stopped ([\d.]+) ms, fsync ([\d.]+) ms")


def freeze(pid, path, log, leave_running=False, timeout=600, extra=()):
    """Run `ckpt freeze -v`; its wall time, stopped/fsync times, size and peak RSS."""
    argv = [CKPT, "freeze", pid, "-o", path, "-v"] + (["--leave-running"] if leave_running else []) + list(extra)
    with open(log, "w") as err:
        t0 = time.perf_counter()
        cpid = spawn(argv, stderr=err.fileno(), session=False)
        done = wait_exit(cpid, timeout)
        wall = time.perf_counter() - t0
    if done is None:
        kill(cpid)
        raise BenchError(f"ckpt freeze did not finish within {timeout} s")
    status, rusage = done
    if status != 0:
        partial = " (and it left a file behind!)" if path.exists() else ""
        raise BenchError(f"ckpt freeze failed ({exit_text(status)}){partial}: {tail(log)}")
    m = FREEZE_LINE.search(Path(log).read_text())
    if not m:
        raise BenchError(f"ckpt freeze -v printed no timing line: {tail(log)}")
    return {"freeze_ms": wall * 1e3, "stopped_ms": float(m[2]), "fsync_ms": float(m[3]),
            "file_mib": path.stat().st_size / MIB, "rss_mib": rusage.ru_maxrss / 1024}


def resume(path, copies=1):
    """ms from the exec of the resume file until the resumed process printed its clock."""
    try:
        return time_to_stamps([[path]] * copies, timeout=120)
    except BenchError as e:
        raise BenchError(f"resume failed: {e}: {tail(STDERR_LOG.name)}")


def one_run(w, tmp, bins):
    """Start w, freeze it, resume it; a dict of the figures (missing ones failed)."""
    row, path = {}, tmp / f"{w.name}.resume"
    log = tmp / "freeze.log"
    with open(tmp / "workload.log", "w") as wlog:
        run = Running(w.argv, w.ready_s, wlog)
    try:
        row.update(freeze(run.pid, path, log, leave_running=w.kind == "leave",
                          extra=["--compress"] if w.kind == "compress" else []))
        if w.kind != "leave" and wait_exit(run.pid, 10) is None:  # ckpt kills the original
            raise BenchError("the original outlived its freeze")
    except BenchError as e:
        row["error"] = str(e)
        return row
    finally:
        run.stop()
    try:
        copies = 8 if w.kind == "x8" else 1
        if w.kind in ("small", "x8"):
            row["fork_exec_ms"] = statistics.median(time_to_stamps([[bins["stamp"]]] * copies)
                                                    for _ in range(3))
        if w.kind == "hint":
            row["profile_ms"] = profile(path)
        if w.kind == "lazy":
            row.update(lazy_resume(path, run.pid))
        elif w.kind != "leave":
            row["resume_ms"] = resume(path, copies)
    except BenchError as e:
        row["error"] = str(e)
    finally:
        path.unlink(missing_ok=True)
    return row


def profile(path, window="2s", timeout=120):
    """`ckpt profile path`: the program gets one byte (it answers, then waits); once
    the window is over and the file rewritten, its end of input ends it. Returns the
    wall time of the profile run in ms (window included)."""
    rin, win = os.pipe()
    os.write(win, b"x")
    rout, wout = os.pipe()
    rerr, werr = os.pipe()
    t0 = time.perf_counter()
    cpid = spawn([CKPT, "profile", path, "--for", window], stdin=rin, stdout=wout, stderr=werr)
    for fd in (rin, wout, werr):
        os.close(fd)
    out, err = Reader(rout, "profiled program"), Reader(rerr, "ckpt profile")
    said = []
    try:
        line = out.line(timeout)
        if line is None or not line.isdigit():
            raise BenchError(f"the profiled program did not answer: {line!r}")
        while (line := err.line(timeout)) is not None and not line.startswith("ckpt profile:"):
            said.append(line)
        if line is None:
            raise BenchError("ckpt profile failed: " + " | ".join(said[-3:]))
    finally:
        os.close(win)
        done = wait_exit(cpid, timeout)
        os.close(rout)
        os.close(rerr)
        if done is None:
            kill(cpid)
        reap_orphans()
    if done is None or done[0] != 0:
        raise BenchError(f"ckpt profile did not end well ({'timeout' if done is None else exit_text(done[0])})")
    return (time.perf_counter() - t0) * 1e3


def helper_alive(pid):
    """Whether the lazy-resume helper serving pid runs (it is named ckpt-lazy-PID).
    A zombie has ended: the bench is a subreaper, so the orphaned helper's zombie
    waits for the bench's reap_orphans."""
    want = f"(ckpt-lazy-{pid}) "
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        at = stat.find(want)
        if at > 0 and stat[at + len(want)] != "Z":
            return True
    return False


def lazy_resume(path, pid, timeout=120):
    """Resume path with CKPT_LAZY=1 (a bench/workload.c program frozen as pid, which
    it gets back). resume_ms: exec until the first timestamp (the first instruction:
    the restarted read returns at once); populated_ms: exec until the helper is gone
    (every page in); slowdown: the median of the workload's own unit of work ('w')
    run while pages arrive, over the median of the same once all are in."""
    rin, win = os.pipe()
    os.write(win, b"x")
    rout, wout = os.pipe()
    STDERR_LOG.seek(0)
    STDERR_LOG.truncate()
    t0 = realtime_ns()
    cpid = spawn([path], stdin=rin, stdout=wout, stderr=STDERR_LOG.fileno(),
                 env=dict(os.environ, CKPT_LAZY="1", CKPT_QUIET="1"))
    os.close(rin)
    os.close(wout)
    reader = Reader(rout, Path(path).name)
    procs = [(cpid, win, reader)]
    try:
        line = reader.line(timeout)
        if line is None or not line.isdigit():
            raise BenchError(f"resume failed: {line!r}: {tail(STDERR_LOG.name)}")
        row = {"resume_ms": (int(line) - t0) / 1e6}
        during, after = [], []
        deadline = time.monotonic() + timeout
        while helper_alive(pid):
            if time.monotonic() > deadline:
                raise BenchError(f"the lazy helper of {pid} still runs after {timeout} s")
            os.write(win, b"w")
            during.append(int(reader.line(timeout).split()[1]))
        row["populated_ms"] = (realtime_ns() - t0) / 1e6
        for _ in range(max(9, len(during))):
            os.write(win, b"w")
            after.append(int(reader.line(timeout).split()[1]))
        if during:
            row["slowdown"] = statistics.median(during) / statistics.median(after)
        return row
    finally:
        finish(procs)


def python_cold_start(n):
    """Rows of ms from spawning python3 on bench/workload.py until its first
    timestamp (in the resume_ms column: the time the resume replaces)."""
    argv = [sys.executable, BENCH / "workload.py"]
    time_to_stamps([argv])  # the files in the page cache, as for a resume
    return [{"run": i + 1, "resume_ms": time_to_stamps([argv])} for i in range(n)]


def run_workload(w, tmp, bins, n):
    """N runs of w; a list of per-run dicts."""
    rows = []
    for i in range(n):
        try:
            row = one_run(w, tmp, bins)
        except (BenchError, OSError) as e:
            row = {"error": str(e)}
        row["run"] = i + 1
        rows.append(row)
        print(f"  {w.name} run {i + 1}/{n}: " + describe(row), flush=True)
    return rows


def describe(row):
    parts = [f"{k.replace('_', ' ')} {row[k]:.1f}" for k in METRICS if k in row]
    if "error" in row:
        parts.append("FAILED: " + row["error"])
    return ", ".join(parts)


# ---------------------------------------------------------------- report

METRICS = ("freeze_ms", "stopped_ms", "fsync_ms", "resume_ms", "file_mib", "rss_mib", "fork_exec_ms",
           "populated_ms", "slowdown", "profile_ms")


def summarize(name, kind, rows, limits, extra):
    """Medians, min and max of each metric, and the ratios to the limits."""
    s = {"workload": name, "runs": len(rows), "failed": sum("error" in r for r in rows)}
    for m in METRICS:
        vals = [r[m] for r in rows if m in r]
        if vals:
            s[m], s[m + "_min"], s[m + "_max"] = statistics.median(vals), min(vals), max(vals)
    if kind in ("mem", "leave") and "freeze_ms" in s:
        s["freeze_ratio"] = gbps(s["freeze_ms"] / 1e3, s["file_mib"] * MIB) / min(
            limits["pvr"], limits["write+fsync"])
    if kind == "mem" and "resume_ms" in s:
        s["resume_ratio"] = gbps(s["resume_ms"] / 1e3, s["file_mib"] * MIB) / min(
            limits["populate"], limits["cached read"])
    elif kind in ("small", "x8") and "resume_ms" in s:
        fill_ms = s["file_mib"] * MIB / 1e9 / min(limits["populate"], limits["cached read"]) * 1e3
        s["resume_ratio"] = statistics.median((r["fork_exec_ms"] + fill_ms) / r["resume_ms"]
                                              for r in rows if "resume_ms" in r)
    s["note"] = extra
    return s


def lazy_note(s):
    """First instruction, full population and the work slowdown of a lazy resume."""
    note = f"lazy: first instruction {num(s['resume_ms'])} ms"
    if "populated_ms" in s:
        note += f", all in {num(s['populated_ms'])} ms"
    if "slowdown" in s:
        note += f", own work x{s['slowdown']:.2f} slower while populating"
    return note


def num(v):
    """Three significant digits or so: 0.712, 12.3, 4321."""
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def fmt(s, m):
    if m not in s:
        return "failed" if s["failed"] else "-"
    return num(s[m])


def fmt_range(s, m):
    if m not in s:
        return fmt(s, m)
    return f"{num(s[m])} [{num(s[m + '_min'])}-{num(s[m + '_max'])}]"


def print_table(summaries, limits, n):
    print()
    print(f"Limits (1 GiB, this run): process_vm_readv {limits['pvr']:.2f} GB/s, "
          f"write {limits['write']:.2f} GB/s, write+fsync {limits['write+fsync']:.2f} GB/s, "
          f"cached read {limits['cached read']:.2f} GB/s, MAP_POPULATE {limits['populate']:.2f} GB/s, "
          f"static fork+exec {limits['fork+exec']:.2f} ms (8 at once {limits['fork+exec x8']:.2f} ms)")
    print(f"Medians of N={n} runs [min-max]. Ratios (1.0 = at the limit): freeze/lim = file bytes/s "
          f"over min(process_vm_readv, write+fsync); resume/lim = file bytes/s over min(MAP_POPULATE, "
          f"cached read), or for small files (fork+exec, timed again before each resume, + the file "
          f"at that speed) / resume time.")
    head = ("workload", "freeze ms", "stopped ms", "fsync ms", "resume ms", "file MiB",
            "RSS MiB", "freeze/lim", "resume/lim", "note")
    cells = [head]
    for s in summaries:
        if "skipped" in s:
            cells.append((s["workload"], *["-"] * 8, "skipped: " + s["skipped"]))
            continue
        note = s["note"]
        if s["failed"]:
            note = f"{s['failed']}/{s['runs']} runs failed; " + note
        cells.append((s["workload"], fmt_range(s, "freeze_ms"), fmt_range(s, "stopped_ms"),
                      fmt_range(s, "fsync_ms"), fmt_range(s, "resume_ms"), fmt(s, "file_mib"),
                      fmt(s, "rss_mib"), fmt(s, "freeze_ratio"), fmt(s, "resume_ratio"),
                      note.strip("; ")))
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(head) - 1)]
    for c in cells:
        print("  ".join(str(v).rjust(w) if i else str(v).ljust(w)
                        for i, (v, w) in enumerate(zip(c, widths))) + "  " + c[-1])


def write_csvs(all_rows, summaries, limits):
    with open(OUT / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("workload", "run") + METRICS + ("error",))
        for name, rows in all_rows:
            for r in rows:
                w.writerow([name, r["run"]] + [f"{r[m]:.3f}" if m in r else "" for m in METRICS]
                           + [r.get("error", "")])
    cols = ["workload", "runs", "failed"]
    for m in METRICS:
        cols += [m, m + "_min", m + "_max"]
    cols += ["freeze_ratio", "resume_ratio", "cold_start_ms", "speedup_vs_cold",
             "resume_minus_small_ms", "note", "skipped"]
    with open(OUT / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        for s in summaries:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in s.items()})
    with open(OUT / "limits.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("limit", "value", "unit"))
        for k, v in limits.items():
            w.writerow((k, f"{v:.4f}", "ms" if "fork" in k else "GB/s"))


def plot(summaries, limits):
    """target/bench/ratios.png: freeze and resume ratio to the limit per workload."""
    rows = [(s["workload"], [s.get("freeze_ratio"), s.get("resume_ratio")], plot_note(s))
            for s in summaries]
    title = "ckpt freeze and resume speed / this machine's limit"
    subtitle = (f"freeze: file bytes/s over min(process_vm_readv, write+fsync) = "
                f"{min(limits['pvr'], limits['write+fsync']):.2f} GB/s;  resume: over "
                f"min(MAP_POPULATE, cached read) = {min(limits['populate'], limits['cached read']):.2f} GB/s, "
                f"or for small files (static fork+exec, timed before each resume, + the file at that speed) "
                f"/ resume time")
    path = OUT / "ratios.png"
    if importlib.util.find_spec("matplotlib"):
        plot_matplotlib(path, title + "\n" + subtitle.replace(";  ", "\n").replace(", or ", ",\nor "), rows)
    else:
        sys.path.insert(0, str(BENCH))
        import barchart
        barchart.bar_chart(path, title, subtitle, rows,
                           [("freeze / limit", (31, 119, 180)), ("resume / limit", (255, 127, 14))],
                           "1.0 = at the limit; longer is faster")
    return path


def plot_note(s):
    if "skipped" in s:
        return "skipped"
    if "freeze_ratio" not in s and "resume_ratio" not in s and s["failed"]:
        return "failed"
    return s["note"]


def plot_matplotlib(path, title, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(rows) + 2.2))
    ys = range(len(rows))
    for j, (name, color) in enumerate((("freeze / limit", "tab:blue"), ("resume / limit", "tab:orange"))):
        vals = [r[1][j] or 0 for r in rows]
        bars = ax.barh([y + 0.38 * j for y in ys], vals, 0.38, label=name, color=color)
        for b, r in zip(bars, rows):
            v = r[1][j]
            ax.text(b.get_width() + 0.01, b.get_y() + 0.19, f"{v:.2f}" if v else "n/a", va="center", fontsize=7)
    ax.axvline(1.0, color="red", linestyle="--", label="limit (1.0 = at the limit; longer is faster)")
    ax.set_xlim(0, max([1.0] + [v for r in rows for v in r[1] if v]) * 1.12)
    ax.set_yticks([y + 0.19 for y in ys], [f"{r[0]}  {r[2]}".strip() for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- main

def selected(all_workloads):
    only = [x.strip() for x in os.environ.get("BENCH_ONLY", "").split(",") if x.strip()]
    names = {w.name for w in all_workloads}
    unknown = [x for x in only if x not in names]
    if unknown:
        sys.exit(f"bench: unknown workload(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return [w for w in all_workloads if not only or w.name in only]


def main():
    global STDERR_LOG
    n = int(os.environ.get("N", "5"))
    skip_big = os.environ.get("BENCH_SKIP_BIG") == "1"
    if not CKPT.exists():
        sys.exit(f"bench: {CKPT} not built (make build)")
    OUT.mkdir(parents=True, exist_ok=True)
    base = Path(os.environ.get("BENCH_TMPDIR", OUT))
    print(f"bench: files in {base} ({check_disk(base)}), N={n}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=base))
    STDERR_LOG = open(tmp / "resume.log", "w")
    try:
        bins = compile_helpers(tmp)
        print("== machine limits", flush=True)
        limits = measure_limits(bins, tmp)
        all_rows, summaries, small_resume, python_cold = [], [], None, None
        for w in selected(workloads(bins, tmp, skip_big)):
            reason = w.skip() if callable(w.skip) else w.skip
            print(f"== {w.name}" + (f": skipped ({reason})" if reason else ""), flush=True)
            if reason:
                summaries.append({"workload": w.name, "runs": 0, "failed": 0, "note": "", "skipped": reason})
                continue
            rows = run_workload(w, tmp, bins, n)
            all_rows.append((w.name, rows))
            s = summarize(w.name, w.kind, rows, limits, "")
            if w.name == "small":
                small_resume = s.get("resume_ms")
            if w.name in ("python", "python-hint", "python-compress") and "resume_ms" in s:
                if python_cold is None:
                    cold_rows = python_cold_start(n)
                    all_rows.append(("python-cold-start", cold_rows))
                    python_cold = statistics.median(r["resume_ms"] for r in cold_rows)
                cold = python_cold
                s["cold_start_ms"], s["speedup_vs_cold"] = cold, cold / s["resume_ms"]
                s["note"] = f"x{cold / s['resume_ms']:.1f} vs cold start ({cold:.0f} ms)"
                if w.kind == "hint":
                    s["note"] += ", lazy with the working-set hint of ckpt profile"
            if w.kind == "lazy" and "resume_ms" in s:
                s["note"] = lazy_note(s)
            if w.name == "threads-64" and "resume_ms" in s and small_resume:
                s["resume_minus_small_ms"] = s["resume_ms"] - small_resume
                s["note"] = f"{s['resume_ms'] - small_resume:+.2f} ms vs small"
            summaries.append(s)
        print_table(summaries, limits, n)
        write_csvs(all_rows, summaries, limits)
        png = plot(summaries, limits)
        print(f"\nCSV: {OUT}/runs.csv, summary.csv, limits.csv; plot: {png}")
    finally:
        cleanup()
        STDERR_LOG.close()
        shutil.rmtree(tmp, ignore_errors=True)


def on_signal(signum, frame):
    signal.signal(signum, signal.SIG_IGN)
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            if fd > 2:
                os.set_inheritable(fd, False)  # e.g. make's jobserver: not for workloads
        except OSError:
            pass
    become_subreaper()
    try:
        main()
    except (KeyboardInterrupt, SystemExit) as e:
        if isinstance(e, KeyboardInterrupt) or (isinstance(e.code, int) and e.code > 128):
            print("bench: interrupted; every process it started was killed", file=sys.stderr)
        raise
