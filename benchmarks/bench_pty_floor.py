"""How fast can an event loop read a PTY flood, with no table and no transport?

Run: ``.venv/bin/python benchmarks/bench_pty_floor.py`` (under a minute). Writes
``benchmarks/results/pty-floor.json``.

Issue 15 asks the kernel's PTY output to reach 0.9x the "raw ceiling": the same child
read by blocking ``os.read`` calls in a tight loop. The table reads from an asyncio
loop (non-blocking reads when epoll says the master is readable), as it must to serve
many processes on one thread. This script measures that floor on its own: per
repetition, the blocking reader, then a bare asyncio ``add_reader`` loop on the main
thread and on a thread of its own (as the kernel's I/O thread runs), each on a fresh
child, so the ratio says what an event-loop reader can reach before any of our code runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Sequence

from _common import MB, emit, machine, median, read_pty_child, rnd

DRAIN_BYTES = 2 * 1024 * 1024  # what one wake-up may read, as the table's backend


def read_pty_asyncio(argv: Sequence[str], in_thread: bool) -> tuple[int, float]:
    """Run ``argv`` on a fresh PTY; read it from an asyncio loop: (bytes, seconds)."""
    master, slave = os.openpty()
    os.set_blocking(master, False)
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, close_fds=True)  # fmt: skip
    os.close(slave)
    total = 0

    async def drain() -> None:
        nonlocal total
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            nonlocal total
            got = 0
            while got < DRAIN_BYTES:
                try:
                    data = os.read(master, 65536)
                except BlockingIOError:
                    break
                except OSError:  # EIO: the child side is closed
                    data = b""
                if not data:
                    loop.remove_reader(master)
                    done.set_result(None)
                    break
                got += len(data)
            total += got

        loop.add_reader(master, on_readable)
        await done

    try:
        if in_thread:
            thread = threading.Thread(target=lambda: asyncio.run(drain()))
            thread.start()
            thread.join()
        else:
            asyncio.run(drain())
        return total, time.perf_counter() - t0
    finally:
        os.close(master)
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=200 * 1024 * 1024)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    argv = ["sh", "-c", f"head -c {args.bytes} /dev/zero | tr '\\0' a"]
    rows: dict[str, list[float]] = {"blocking": [], "asyncio": [], "asyncio_thread": []}
    for _ in range(args.reps):
        for name, read in (("blocking", lambda: read_pty_child(argv)),
                           ("asyncio", lambda: read_pty_asyncio(argv, False)),
                           ("asyncio_thread", lambda: read_pty_asyncio(argv, True))):  # fmt: skip
            nbytes, seconds = read()
            rows[name].append(nbytes / seconds / MB)
    paired = [a / b for a, b in zip(rows["asyncio_thread"], rows["blocking"], strict=True)]
    emit(
        {
            "benchmark": "pty-floor",
            "machine": machine(),
            "MBps": {k: [rnd(v, 1) for v in vs] for k, vs in rows.items()},
            "median_MBps": {k: rnd(median(vs), 1) for k, vs in rows.items()},
            "ratio_asyncio_thread_vs_blocking": [rnd(r, 2) for r in paired],
            "median_ratio_asyncio_thread_vs_blocking": rnd(median(paired), 2),
        },
        "pty-floor",
    )


if __name__ == "__main__":
    main()
