"""The stdio protocol suite, unchanged, against ``codex-exec connect`` on each route.

Each route runs the suite's own files in a child pytest with ``CODEX_EXEC_STDIO_ROUTE``
set (see connect_routes.py): ``existing`` (ZeroMQ to a kernel from its kernelspec)
runs every stdio test; ``server`` (``--url`` to a Jupyter server with a token) and
``gateway`` (``--url`` to Kernel Gateway) run a representative subset — handshake,
error codes, each kind of method, 10 MiB exact by hash, lifecycle, and on ``server``
the 200 MB flood with a stalled reader (relay memory bounded) — because each client
there starts a kernel through the server: the whole suite took 14 min per route on
the shared 2-core machine, too slow for CI.
To run the whole suite on any route by hand:
``CODEX_EXEC_STDIO_ROUTE=server .venv/bin/python -m pytest tests/test_stdio_*.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SUITE = ["test_stdio_server.py", "test_stdio_flow.py", "test_stdio_lifecycle.py",
         "test_stdio_fuzz.py", "test_sessions_stdio.py"]  # fmt: skip
SUBSET = " or ".join([
    "initialize_result", "calls_before_handshake", "malformed_lines", "unknown_method",
    "params_validated", "too_long_line", "pipes_separate", "spawn_failures",
    "read_long_poll", "write_order_dedup", "tty_write", "resize", "signal_by_name",
    "terminate_kills", "list_fields", "subscribe_replays", "10_mib_random", "stdin_eof",
    "signal_to_server",
])  # fmt: skip

ROUTES = {
    "existing": ["-m", "not slow"],
    "server": ["-k", SUBSET + " or 200mb_flood"],
    "gateway": ["-k", SUBSET, "-m", "not slow"],
}


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("route", list(ROUTES))
def test_stdio_suite_through_connect(route: str) -> None:
    env = {**os.environ, "CODEX_EXEC_STDIO_ROUTE": route}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
           *ROUTES[route], *(str(TESTS / name) for name in SUITE)]  # fmt: skip
    r = subprocess.run(cmd, env=env, cwd=TESTS.parent, capture_output=True, text=True)
    summary = r.stdout.strip().splitlines()[-1:] or [""]
    assert r.returncode == 0, f"route {route}: {summary[0]}\n{r.stdout[-6000:]}{r.stderr[-2000:]}"
    assert " passed" in summary[0] and "failed" not in summary[0], summary
