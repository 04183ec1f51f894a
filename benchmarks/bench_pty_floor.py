"""What can any reader of a PTY flood reach on this machine, and any relay of it?

Run: ``.venv/bin/python benchmarks/bench_pty_floor.py`` (about two minutes). Writes
``benchmarks/results/pty-floor.json``.

Issue 15 asks the kernel's and the stdio server's PTY output to reach 0.9x the "raw
ceiling": the same child read by blocking ``os.read`` calls in a tight loop that keeps
nothing. Our servers do more than read: they hand every byte to another process. This
script measures the floors under our figures, each rung paired with the ceiling in the
same repetition (the ceiling itself swings run to run):

- ``asyncio_thread``: a bare asyncio ``add_reader`` loop on a thread of its own, as the
  kernel's I/O thread reads (``asyncio``: the same on the main thread). Is an event-loop
  reader the floor? (No: about 1.0x.)
- ``relay_pipe``: the cheapest relay there is: blocking reads gathered into 256 KiB
  chunks and written to a pipe, read and thrown away by a second process. Any server
  that delivers the output somewhere pays at least this.
- ``relay_tcp``: the same in 2 MiB chunks over loopback TCP.
- ``relay_zmq``: 2 MiB chunks on a ZeroMQ XPUB socket (no-drop, as a kernel's IOPub)
  to a SUB socket in the second process, over loopback TCP: what the kernel's output
  crosses on its way to any Jupyter client, with nothing else of a kernel around it.
- ``relay_stdio_wire``: the pipe relay with the stdio server's wire format: each chunk a
  ``process/output`` JSON line (``protocol.output_line``: base64 by pybase64), which the
  reader parses as a stdio client does (orjson, pybase64). The floor of ``codex-exec
  serve`` for a protocol that carries bytes as base64 in JSON.
- ``ours_stdio``: ``codex-exec serve`` (bench_stdio's client), ``ours_kernel``: a
  ``codex-exec`` kernel (bench_kernel's raw-ZeroMQ comm client, acking every chunk), and
  ``ours_kernel_no_client``: that kernel reading the flood with nobody subscribed.

Every rung runs in every repetition (the order reversed on odd ones), because this
machine's PTY speed drifts from minute to minute by more than the gaps measured here:
only ratios within one repetition are compared. ``median_ratio_vs_floor`` says how far
each server is from the relay that does the least its transport needs.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

import zmq
from _common import MB, ROOT, emit, log, machine, median, read_pty_child, rnd, start_on_pty

sys.path.insert(0, str(ROOT))

from bench_kernel import ZComm, no_client_throughput, ours_throughput, start_kernel, stop_kernel
from bench_stdio import Serve, serve_throughput

from codex_exec_kernel.protocol import output_line

DRAIN_BYTES = 2 * 1024 * 1024  # what one wake-up may read, as the table's backend


def read_pty_asyncio(argv: Sequence[str], in_thread: bool) -> tuple[int, float]:
    """Run ``argv`` on a fresh PTY; read it from an asyncio loop: (bytes, seconds)."""
    t0 = time.perf_counter()
    master, proc = start_on_pty(argv)
    os.set_blocking(master, False)
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


# What the second process runs: read until EOF, keep nothing, print the byte count.
# ``wire`` parses process/output lines as a stdio client does and counts decoded bytes.
_CONSUMER = """
import os, socket, sys
kind = sys.argv[1]
if kind == "tcp":
    sock = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    read = lambda: sock.recv(1 << 20)
elif kind == "zmq":
    import zmq
    sub = zmq.Context().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(sys.argv[2])
    read = lambda: sub.recv(copy=False).buffer
else:
    read = lambda: os.read(0, 1 << 20)
total = 0
if kind == "wire":
    import orjson, pybase64
    rest = b""
    while data := read():
        lines = (rest + data).split(b"\\n")
        rest = lines.pop()
        for line in lines:
            total += len(pybase64.b64decode(orjson.loads(line)["params"]["chunk"]))
else:
    while data := read():
        total += len(data)
print(total)
"""


def relay_pty(argv: Sequence[str], kind: str, chunk: int) -> tuple[int, float]:
    """Read ``argv``'s PTY with blocking reads and hand every ``chunk`` bytes to a second
    process (``kind``: ``pipe``, ``tcp``, ``zmq`` or ``wire``): (bytes it counted, seconds
    until it has them all)."""
    t0 = time.perf_counter()
    listener: socket.socket | None = None
    conn: socket.socket | None = None
    pub: zmq.Socket[bytes] | None = None
    if kind == "zmq":
        pub = zmq.Context.instance().socket(zmq.XPUB)
        pub.setsockopt(zmq.XPUB_NODROP, 1)
        url = f"tcp://127.0.0.1:{pub.bind_to_random_port('tcp://127.0.0.1')}"
        consumer = subprocess.Popen([sys.executable, "-c", _CONSUMER, kind, url],
                                    stdout=subprocess.PIPE)  # fmt: skip
        pub.recv()  # its subscription: from here on nothing is dropped
        out_fd = -1
    elif kind == "tcp":
        listener = socket.create_server(("127.0.0.1", 0))
        port = str(listener.getsockname()[1])
        consumer = subprocess.Popen([sys.executable, "-c", _CONSUMER, kind, port],
                                    stdout=subprocess.PIPE)  # fmt: skip
        conn, _ = listener.accept()
        out_fd = conn.fileno()
    else:
        rfd, out_fd = os.pipe()
        consumer = subprocess.Popen([sys.executable, "-c", _CONSUMER, kind], stdin=rfd,
                                    stdout=subprocess.PIPE)  # fmt: skip
        os.close(rfd)
    master, proc = start_on_pty(argv)
    pieces: list[bytes] = []
    size = seq = 0

    def hand_over() -> None:
        nonlocal pieces, size, seq
        seq += 1
        joined = b"".join(pieces)
        out = output_line("1", seq, "pty", joined) if kind == "wire" else joined
        pieces, size = [], 0
        if pub is not None:
            pub.send(out, copy=False)
            return
        view = memoryview(out)
        while view:
            view = view[os.write(out_fd, view) :]

    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                data = b""
            if data:
                pieces.append(data)
                size += len(data)
            if size and (size >= chunk or not data):
                hand_over()
            if not data:
                break
    finally:
        if pub is not None:
            pub.send(b"")  # the end: an empty message
        elif conn is not None:
            conn.close()
        else:
            os.close(out_fd)
        counted = int(consumer.communicate(timeout=60)[0] or 0)
        elapsed = time.perf_counter() - t0
        if pub is not None:
            pub.close(linger=0)
        if listener is not None:
            listener.close()
        os.close(master)
        proc.wait()
    return counted, elapsed


class Ours:
    """Our two servers, started once: ``codex-exec serve`` and a ``codex-exec`` kernel
    (read by bench_kernel's raw-ZeroMQ comm client, flow-controlled, acking each chunk)."""

    def __init__(self) -> None:
        self.serve = Serve()
        self.km = start_kernel("codex-exec")
        self.zc = ZComm(self.km, "codex.exec", subshell=True)
        self.zc.request("initialize", {"clientName": "bench_pty_floor", "flowControl": True})
        self.zc.send_data({"method": "initialized", "params": {}})

    def close(self) -> None:
        self.zc.close()
        stop_kernel(self.km)
        self.serve.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=100 * 1024 * 1024)
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    # The child of bench_kernel.py's throughput figure.
    argv = ["bash", "-c", f"head -c {args.bytes} /dev/zero | tr '\\0' a"]
    ours = Ours()
    rungs: dict[str, Callable[[], tuple[int, float]]] = {
        "blocking": lambda: read_pty_child(argv),
        "asyncio_thread": lambda: read_pty_asyncio(argv, True),
        "relay_pipe": lambda: relay_pty(argv, "pipe", 256 * 1024),
        "relay_zmq": lambda: relay_pty(argv, "zmq", 2 * 1024 * 1024),
        "relay_stdio_wire": lambda: relay_pty(argv, "wire", 256 * 1024),
        "ours_stdio": lambda: serve_throughput(ours.serve, argv, tty=True),
        "ours_kernel": lambda: ours_throughput(ours.zc, argv),
        "ours_kernel_no_client": lambda: no_client_throughput(ours.zc, argv, args.bytes),
    }
    rows: dict[str, list[float]] = {name: [] for name in rungs}
    try:
        for rep in range(args.reps):
            # Every rung in every repetition, the order reversed on odd ones: the machine's
            # speed drifts from minute to minute, so only same-repetition ratios count.
            for name in list(rungs) if rep % 2 == 0 else list(reversed(rungs)):
                nbytes, seconds = rungs[name]()
                if nbytes != args.bytes:
                    raise RuntimeError(f"{name}: {nbytes} bytes, expected {args.bytes}")
                rows[name].append(nbytes / seconds / MB)
            log(f"rep {rep + 1}/{args.reps}: "
                + ", ".join(f"{k}={v[-1]:.0f}" for k, v in rows.items()))  # fmt: skip
    finally:
        ours.close()

    def paired(a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(rows[a], rows[b], strict=True)]

    vs_blocking = {name: paired(name, "blocking") for name in rungs if name != "blocking"}
    # How far each server is from the floor of what it must do (same repetitions).
    vs_floor = {
        "ours_stdio / relay_stdio_wire": paired("ours_stdio", "relay_stdio_wire"),
        "ours_kernel / relay_zmq": paired("ours_kernel", "relay_zmq"),
        "ours_kernel_no_client / relay_zmq": paired("ours_kernel_no_client", "relay_zmq"),
    }
    emit(
        {
            "benchmark": "pty-floor",
            "machine": machine(),
            "bytes": args.bytes,
            "reps": args.reps,
            "command": argv[-1],
            "MBps": {k: [rnd(v, 1) for v in vs] for k, vs in rows.items()},
            "median_MBps": {k: rnd(median(vs), 1) for k, vs in rows.items()},
            "ratio_vs_blocking": {k: [rnd(r, 2) for r in rs] for k, rs in vs_blocking.items()},
            "median_ratio_vs_blocking": {k: rnd(median(rs), 3) for k, rs in vs_blocking.items()},
            "median_ratio_vs_floor": {k: rnd(median(rs), 3) for k, rs in vs_floor.items()},
        },
        # Only a run with the default sizes replaces the recorded results.
        "pty-floor" if vars(args) == vars(parser.parse_args([])) else None,
    )


if __name__ == "__main__":
    main()
