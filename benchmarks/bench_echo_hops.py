"""Where a keystroke's echo spends its time inside the codex-exec kernel.

Run: ``.venv/bin/python benchmarks/bench_echo_hops.py`` (under a minute). Writes
``benchmarks/results/echo-hops.json``.

Issue 15 asks for each hop of a keystroke to be measured before anything is changed.
This starts a ``codex-exec`` kernel, wraps six of its own functions from a cell (the
wrappers only take ``time.perf_counter()``; one process, so the stamps compare), and
sends one-byte ``process/write`` notifications to a PTY ``cat`` the way the panel
sends keys (bench_kernel's raw-ZeroMQ client, one key every 25 ms). Per key:

- ``shell_route``: the shell-channel thread checks the message's HMAC and parses it
  (``ShellRoute.take`` until ``CommConnection.receive``);
- ``to_io_thread``: handed to the I/O thread until it starts on it;
- ``to_pty_write``: the dispatcher parses the params and writes the byte;
- ``cat_echo``: until the echo is readable on the PTY master;
- ``read_to_iopub_send``: read, coalescing (skipped: an echo goes out at once), the
  comm message built and signed, handed to ipykernel's IOPub thread, which sends it.

The client's round trip (``client_p50_ms``) adds ZeroMQ both ways.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import sys
from typing import Any

from _common import ROOT, emit, log, machine, median, rnd

sys.path.insert(0, str(ROOT))

from bench_kernel import OursEcho, ZComm, start_kernel, stop_kernel

STAMPS = ["shell_in", "handed_over", "io_handle", "pty_write", "echo_read", "iopub_sent"]
HOPS = ["shell_route", "to_io_thread", "to_pty_write", "cat_echo", "read_to_iopub_send"]

# Runs in the kernel: wraps the functions each stamp names, and can undo it.
INSTRUMENT = r"""
import time
import codex_exec_kernel.backend as _B
import codex_exec_kernel.shellroute as _SR
import codex_exec_kernel.transports.comm as _C
_hops_rows, _hops_cur = [], {}
_hops_orig = (_SR.ShellRoute.take, _C.CommConnection._handle, _B.LocalBackend.write,
              _B.LocalBackend._on_readable, _C.CommConnection.receive)
_hops_iopub = get_ipython().kernel.iopub_thread
_hops_send = _hops_iopub._really_send

def _hops_take(self, frames, _f=_hops_orig[0]):
    _hops_cur.clear()
    _hops_cur["shell_in"] = time.perf_counter()
    return _f(self, frames)

def _hops_receive(self, msg, _f=_hops_orig[4]):
    _hops_cur.setdefault("handed_over", time.perf_counter())
    return _f(self, msg)

def _hops_handle(self, msg, data, buffers, _f=_hops_orig[1]):
    _hops_cur.setdefault("io_handle", time.perf_counter())
    return _f(self, msg, data, buffers)

def _hops_write(self, data, _f=_hops_orig[2]):
    _hops_cur.setdefault("pty_write", time.perf_counter())
    return _f(self, data)

def _hops_readable(self, fd, _f=_hops_orig[3]):
    if "pty_write" in _hops_cur:
        _hops_cur.setdefault("echo_read", time.perf_counter())
    return _f(self, fd)

def _hops_really_send(*args, **kwargs):
    sent = _hops_send(*args, **kwargs)
    if "echo_read" in _hops_cur and "iopub_sent" not in _hops_cur:
        _hops_cur["iopub_sent"] = time.perf_counter()
        _hops_rows.append(dict(_hops_cur))
    return sent

def _hops_undo():
    (_SR.ShellRoute.take, _C.CommConnection._handle, _B.LocalBackend.write,
     _B.LocalBackend._on_readable, _C.CommConnection.receive) = _hops_orig
    _hops_iopub._really_send = _hops_send

(_SR.ShellRoute.take, _C.CommConnection._handle, _B.LocalBackend.write,
 _B.LocalBackend._on_readable, _C.CommConnection.receive) = (
    _hops_take, _hops_handle, _hops_write, _hops_readable, _hops_receive)
_hops_iopub._really_send = _hops_really_send
"""


def in_kernel(kc: Any, code: str) -> Any:
    """Run ``code`` in the kernel; its last line's value, a JSON string, decoded."""
    out: dict[str, Any] = {}

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "execute_result":
            out["value"] = msg["content"]["data"]["text/plain"]
        elif msg["msg_type"] == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"]))

    kc.execute_interactive(code, timeout=60, output_hook=hook)
    return json.loads(ast.literal_eval(out["value"])) if "value" in out else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--pace-ms", type=float, default=25.0)
    args = parser.parse_args()
    km = start_kernel("codex-exec")
    kc = km.client()
    kc.start_channels()
    zc: ZComm | None = None
    echo: OursEcho | None = None
    try:
        kc.wait_for_ready(timeout=60)
        in_kernel(kc, INSTRUMENT)
        zc = ZComm(km, "codex.exec", subshell=False)  # the panel's route: the shell channel
        zc.request("initialize", {"clientName": "bench_echo_hops"})
        zc.send_data({"method": "initialized", "params": {}})
        echo = OursEcho(zc)
        in_kernel(kc, "_hops_rows.clear()")
        log(f"{args.keys} keys, one every {args.pace_ms} ms")
        client = echo.run(args.keys, args.pace_ms / 1000, notify=True)
        rows = in_kernel(kc, "import json; _hops_undo(); json.dumps(_hops_rows)")
    finally:
        if echo is not None:
            echo.close()
        if zc is not None:
            zc.close()
        with contextlib.suppress(Exception):
            kc.stop_channels()
        stop_kernel(km)
    rows = [r for r in rows if all(k in r for k in STAMPS)]
    hops = {
        name: rnd(median([(r[b] - r[a]) * 1000 for r in rows]), 3)
        for name, a, b in zip(HOPS, STAMPS[:-1], STAMPS[1:], strict=True)
    }
    kernel = [(r["iopub_sent"] - r["shell_in"]) * 1000 for r in rows]
    emit(
        {
            "benchmark": "echo-hops",
            "machine": machine(),
            "keys": args.keys,
            "pace_ms": args.pace_ms,
            "samples": len(rows),
            "hops_p50_ms": hops,
            "kernel_p50_ms": rnd(median(kernel), 3),
            "client_p50_ms": rnd(median(client), 3),
        },
        "echo-hops" if vars(args) == vars(parser.parse_args([])) else None,
    )


if __name__ == "__main__":
    main()
