"""Shared helpers of the benchmark scripts (not part of the package)."""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
MB = 1_000_000  # throughput figures are in decimal MB/s
MiB = 1 << 20


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ratio(a: float, b: float) -> float | None:
    if not b or a != a or b != b:  # zero or NaN
        return None
    return round(a / b, 3)


def rnd(value: float | None, digits: int = 2) -> float | None:
    if value is None or value != value:
        return None
    return round(value, digits)


def machine() -> dict[str, Any]:
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpus": os.cpu_count(),
        "loadavg_at_start": load,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "measured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def emit(results: dict[str, Any], name: str | None) -> None:
    """Print one JSON line; keep it in benchmarks/results/<name>.json unless name is None."""
    line = json.dumps(results, separators=(",", ":"), sort_keys=False)
    if name is not None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(line, flush=True)


def log(*args: Any) -> None:
    """Progress on stderr (stdout carries only the JSON line)."""
    print(*args, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_group(proc: subprocess.Popen[Any] | None, grace: float = 2.0) -> None:
    """End a child we started (in its own session) and everything in its group."""
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(grace)


# --------------------------------------------------------------------------- raw ceilings


def start_on_pty(argv: Sequence[str]) -> tuple[int, subprocess.Popen[bytes]]:
    """Start ``argv`` in its own session on a fresh PTY: (the master fd, the child)."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            list(argv), stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            close_fds=True,
        )  # fmt: skip
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return master, proc


def read_pty_child(argv: Sequence[str], bufsize: int = 65536) -> tuple[int, float]:
    """Run ``argv`` on a fresh PTY and read the master until EIO: (bytes, seconds)."""
    t0 = time.perf_counter()
    master, proc = start_on_pty(argv)
    total = 0
    try:
        while True:
            try:
                data = os.read(master, bufsize)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    break
                raise
            if not data:
                break
            total += len(data)
        elapsed = time.perf_counter() - t0
    finally:
        os.close(master)
        kill_group(proc, 1.0)
    return total, elapsed


def read_pipe_child(argv: Sequence[str], bufsize: int = 65536) -> tuple[int, float]:
    """Run ``argv`` with stdout on a pipe and read it until EOF: (bytes, seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    total = 0
    try:
        while data := os.read(fd, bufsize):
            total += len(data)
        elapsed = time.perf_counter() - t0
    finally:
        proc.stdout.close()
        kill_group(proc, 1.0)
    return total, elapsed


def exit_on_signals() -> None:
    """SIGTERM/SIGHUP raise SystemExit, so every ``finally`` cleanup still runs."""

    def on_signal(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)


@contextlib.contextmanager
def deadline_guard(seconds: float) -> Iterator[None]:
    """SIGALRM after ``seconds``: a hung measurement raises instead of hanging forever."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"benchmark exceeded {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
