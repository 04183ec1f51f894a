"""A second Jupyter client that stops reading IOPub must not grow the kernel.

Bound (docs/protocol.md, Limits): kernel RSS < 300 MB during a 1 GB flood while
another IOPub subscriber is stalled (SIGSTOPped) for 10 s; the reading client still
gets every byte, in order, once the stalled one resumes. Before the IOPub gate the
kernel queued everything for the slowest subscriber (54 -> 571 MB for 512 MB).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
from kernel_helpers import start_kernel
from waiting import wait_until

from codex_exec_kernel.client import ExecClient

MB = 1_000_000
LAST = 110_000_000  # `seq 1 LAST` is ~1.07 GB
STALL_SECONDS = 10.0
RSS_BOUND = 300 * MB

LISTENER = r"""
import sys, zmq
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.RCVHWM, 1)
sub.setsockopt(zmq.RCVBUF, 4096)
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.connect(sys.argv[1])
sub.recv_multipart()
print("subscribed", flush=True)
while True:
    sub.recv_multipart()
"""


def expected_digest() -> tuple[str, int]:
    out = subprocess.run(f"seq 1 {LAST} | tee >(wc -c >&2) | sha256sum", shell=True,
                         capture_output=True, executable="/bin/bash", check=True)  # fmt: skip
    return out.stdout.split()[0].decode(), int(out.stderr)


@pytest.mark.slow
def test_stalled_iopub_listener_bounds_kernel_memory_and_loses_nothing() -> None:
    km = start_kernel()
    listener = None
    try:
        kernel = psutil.Process(km.provisioner.process.pid)  # type: ignore[union-attr]
        info = km.get_connection_info()
        url = f"{info['transport']}://{info['ip']}:{info['iopub_port']}"
        listener = subprocess.Popen([sys.executable, "-c", LISTENER, url],
                                    stdout=subprocess.PIPE, text=True)  # fmt: skip
        with ExecClient.connect(km.connection_file) as client:
            assert listener.stdout is not None
            subscribed = threading.Event()
            threading.Thread(target=lambda: listener.stdout.readline() and subscribed.set(),
                             daemon=True).start()  # fmt: skip
            # IOPub traffic until the listener has seen a message (its subscription is on)
            wait_until(lambda: client.list() is not None and subscribed.wait(0.1), 30,
                       message="the listener to subscribe")  # fmt: skip
            digest, size = expected_digest()
            proc = client.exec(["seq", "1", str(LAST)])
            sha = hashlib.sha256()
            got = 0
            peak = 0
            during_stall: list[int] = []  # bytes received when the stall began and ended
            stop_sampling = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not stop_sampling.is_set():
                    peak = max(peak, kernel.memory_info().rss)
                    time.sleep(0.05)

            def resume() -> None:
                during_stall.append(got)
                os.kill(listener.pid, signal.SIGCONT)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            timer = threading.Timer(STALL_SECONDS, resume)
            for chunk in proc:
                sha.update(chunk.data)
                got += len(chunk.data)
                if not during_stall and got > 50 * MB:
                    during_stall.append(got)
                    os.kill(listener.pid, signal.SIGSTOP)
                    timer.start()
            timer.join()
            stop_sampling.set()
            sampler.join()
            assert proc.wait(60) == 0
            assert len(during_stall) == 2, "the flood ended before the stall did"
            assert got == size and sha.hexdigest() == digest  # every byte, in order
            assert peak < RSS_BOUND, f"kernel RSS peaked at {peak / MB:.0f} MB"
            # What one stalled client does to the others: their output pauses once IOPub
            # holds what it may, and goes on when the stalled one reads again.
            assert during_stall[1] - during_stall[0] < 200 * MB, during_stall
    finally:
        if listener is not None:
            os.kill(listener.pid, signal.SIGCONT)
            listener.kill()
            listener.wait()
        km.shutdown_kernel(now=True)
