"""Observers of the server's I/O loop while an adversary's requests are in flight
(issue 12: "the loop answers a process/list within 100 ms throughout").

Two observers, one per transport, each independent of the adversary's own requests:

- :class:`ListProber` (kernel): a second client of the same kernel, in a process of
  its own (so the test's encoding of huge requests cannot delay it), with its own
  comm, sending ``process/list`` back to back and printing each latency.
- :class:`Canary` (stdio): ``codex-exec serve`` has one connection per server, so a
  second client cannot ask it anything; instead a child of the server stamps
  CLOCK_MONOTONIC (shared by every process) on a line every 2 ms, and the delay until
  its ``process/output`` reaches us is how long the loop left I/O waiting, which is
  what a ``process/list`` from a second connection would wait too.

Run as a script, this module is the prober: ``python loop_probes.py CONNECTION_FILE``
prints ``{"at": <monotonic send time>, "latency": <seconds>}`` per probe until its
stdin closes.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

PACE = 0.01  # seconds between two probes (the canary stamps every 2 ms)

CANARY = ("import os, time\n"
          "while True:\n"
          "    os.write(1, b'%.6f\\n' % time.monotonic())\n"
          "    time.sleep(0.002)\n")  # fmt: skip


class Samples:
    """(time the probe was sent or stamped, latency) pairs, filled by a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[float, float]] = []

    def add(self, at: float, latency: float) -> None:
        with self._lock:
            self._items.append((at, latency))

    def latest(self) -> float:
        with self._lock:
            return self._items[-1][0] if self._items else 0.0

    def between(self, start: float, end: float) -> list[float]:
        """Latencies of the probes in flight at some point of [start, end]: a probe sent
        just before a batch and answered during it counts, as the batch delayed it."""
        with self._lock:
            return [lat for at, lat in self._items if at <= end and at + lat >= start]


class ListProber:
    """A second kernel client pinging ``process/list`` (see the module docstring)."""

    def __init__(self, connection_file: str) -> None:
        self.samples = Samples()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__)), connection_file],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(Path(__file__).parent),
        )  # fmt: skip
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            probe = json.loads(line)
            self.samples.add(probe["at"], probe["latency"])

    def wait_past(self, moment: float, timeout: float) -> None:
        """Until a probe sent after ``moment`` came back (so every probe sent within a
        window ending then is in)."""
        deadline = time.monotonic() + timeout
        while self.samples.latest() <= moment:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"the prober gave no answer in {timeout:g} s")
            time.sleep(PACE)  # polling the prober's progress

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Canary:
    """Turns the canary child's ``process/output`` into loop delays (stdio)."""

    def __init__(self, process_id: str = "canary") -> None:
        self.process_id = process_id
        self.samples = Samples()
        self._partial = b""

    def start_params(self) -> dict[str, Any]:
        return {"argv": [sys.executable, "-c", CANARY], "processId": self.process_id}

    def on_notification(self, msg: dict[str, Any]) -> None:
        """Give this every notification (the stdio client's reader thread calls it)."""
        params = msg.get("params") or {}
        if msg.get("method") != "process/output" or params.get("processId") != self.process_id:
            return
        now = time.monotonic()
        data = self._partial + base64.b64decode(params["chunk"])
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            stamped = float(line)
            self.samples.add(stamped, now - stamped)


def main(connection_file: str) -> None:
    from jupyter_client import BlockingKernelClient
    from kernel_helpers import RawComm

    kc = BlockingKernelClient()
    kc.load_connection_file(connection_file)
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    raw = RawComm(kc)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set():
        t0 = time.monotonic()
        raw.request("process/list", timeout=60)
        print(json.dumps({"at": t0, "latency": time.monotonic() - t0}), flush=True)
        raw.notes.clear()
        raw.note_buffers.clear()
        stop.wait(PACE)
    kc.stop_channels()


if __name__ == "__main__":
    main(sys.argv[1])
