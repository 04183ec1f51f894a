"""Benchmark of ``codex-exec connect``: the stdio protocol relayed to a kernel, against
``codex-exec serve`` on the same machine.

Run: ``.venv/bin/python benchmarks/bench_connect.py`` (about 2 minutes). Prints one
JSON line (also written to ``benchmarks/results/connect.json``); progress on stderr.

The same client code (bench_stdio's ``Serve``: one JSON line per message, base64
decoded) drives three servers, each at its default settings, interleaved repetition
by repetition:

* ``serve``: ``codex-exec serve`` (the reference);
* ``url``: ``codex-exec connect --url`` to ``jupyter server`` on loopback (token, our
  server extension on), a new codex-exec kernel behind it;
* ``existing``: ``codex-exec connect --existing`` to a codex-exec kernel started by
  jupyter_client's KernelManager.

1. Output throughput: ``head -c BYTES /dev/zero`` through pipes, MB/s; ratio to serve.
2. One-byte echo through a PTY ``cat``: back to back and paced like typing; p50 ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    MB,
    ROOT,
    deadline_guard,
    emit,
    exit_on_signals,
    log,
    machine,
    median,
    percentile,
    ratio,
    rnd,
)
from bench_stdio import PACE_MS, Serve, echo_serve, serve_throughput

sys.path.insert(0, str(ROOT / "tests"))
from connect_routes import start_jupyter_server


class Relayed(Serve):
    """bench_stdio's client, on ``codex-exec connect ARGS`` instead of ``serve``."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        # A relay's first initialize may wait for a kernel to start.
        super().__init__(*args, command="connect", env=env, client_name="bench_connect",
                         init_timeout=120)  # fmt: skip


def open_servers() -> tuple[dict[str, Serve], list[Any]]:
    """serve, connect --url and connect --existing; plus what to stop at the end."""
    import os

    from jupyter_client.manager import KernelManager

    cleanup: list[Any] = []
    jserver = start_jupyter_server(Path(tempfile.mkdtemp(prefix="bench-connect-")))
    cleanup.append(jserver.stop)
    km = KernelManager(kernel_name="codex-exec")
    km.start_kernel()
    cleanup.append(lambda: km.shutdown_kernel(now=True))
    servers: dict[str, Serve] = {"serve": Serve()}
    env = {**os.environ, "JUPYTER_TOKEN": jserver.token}
    servers["url"] = Relayed(["--url", jserver.url], env)
    servers["existing"] = Relayed(["--existing", km.connection_file])
    return servers, cleanup


def bench_throughput(servers: dict[str, Serve], nbytes: int, reps: int) -> dict[str, Any]:
    argv = ["head", "-c", str(nbytes), "/dev/zero"]
    rates: dict[str, list[float]] = {name: [] for name in servers}
    for rep in range(reps):
        for name, server in servers.items():  # interleaved
            got, secs = serve_throughput(server, argv, tty=False)
            assert got == nbytes, (name, got)
            rates[name].append(got / secs / MB)
        log(f"throughput rep {rep}: " + ", ".join(f"{n} {r[-1]:.0f} MB/s"
                                                  for n, r in rates.items()))  # fmt: skip
    out: dict[str, Any] = {"bytes": nbytes, "reps": reps, "stream": "pipe"}
    for name, values in rates.items():
        per_rep = [v / s for v, s in zip(values, rates["serve"], strict=True)]
        out[name] = {"median_MBps": rnd(median(values), 1),
                     "ratio_vs_serve": rnd(median(per_rep), 3)}  # fmt: skip
    return out


def bench_echo(servers: dict[str, Serve], n: int, blocks: int) -> dict[str, Any]:
    out: dict[str, Any] = {"round_trips": n}
    for label, pace in (("back_to_back", 0.0), ("paced", PACE_MS / 1000)):
        times: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(blocks):
            for name, server in servers.items():
                times[name] += echo_serve(server, max(1, n // blocks), pace)
        p50_serve = percentile(times["serve"], 50)
        out[label] = {name: {"p50_ms": rnd(percentile(t, 50), 3),
                             "p99_ms": rnd(percentile(t, 99), 3),
                             "ratio_p50_vs_serve": ratio(percentile(t, 50), p50_serve)}
                      for name, t in times.items()}  # fmt: skip
        log(f"echo[{label}]: {out[label]}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=100 * 1024 * 1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--echo", type=int, default=300)
    parser.add_argument("--only", choices=["throughput", "echo"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["throughput", "echo"])
    default = args.bytes == 100 * 1024 * 1024 and args.reps == 3 and args.echo == 300
    results: dict[str, Any] = {"benchmark": "connect", "machine": machine()}
    t0 = time.perf_counter()
    exit_on_signals()
    servers: dict[str, Serve] = {}
    cleanup: list[Any] = []
    try:
        with deadline_guard(600):
            servers, cleanup = open_servers()
            if "throughput" in only:
                results["throughput"] = bench_throughput(servers, args.bytes, args.reps)
            if "echo" in only:
                results["echo"] = bench_echo(servers, args.echo, blocks=5)
    finally:
        for server in servers.values():
            server.close()
        for stop in reversed(cleanup):
            stop()
    results["seconds"] = round(time.perf_counter() - t0, 1)
    emit(results, "connect" if default and only == {"throughput", "echo"} else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
