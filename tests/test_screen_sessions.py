"""process/snapshot of a background session (issue 14): the model lives in the supervisor.

A session runs a full-screen script; a first `codex-exec serve` (standing in for the
kernel that created it) attaches, snapshots, and goes away; a second one attaches
later and its snapshot, from the supervisor's model, still draws the whole screen
(cell by cell against xterm.js fed the whole log), and the output after its seq
continues it exactly.
"""

from __future__ import annotations

import base64
from typing import Any

from screen_ref import reference as xterm_reference
from sessions_helpers import REPO, session_env
from stdio_client import StdioClient
from test_screen_snapshot import ALT_SCRIPT, assert_same, continued, outputs, resubscribe

from codex_exec_kernel.sessions.store import SessionStore

pytest_plugins = ["sessions_fixtures"]
ROWS, COLS = 24, 80
SID = "screen"
PID = f"session:{SID}"


#: SessionConfig.screen_scrollback_lines, passed: the script prints 61 lines before its
#: alternate screen.
SCROLLBACK = 20


def serve(home: str) -> StdioClient:
    return StdioClient("--ProcessTable.retained_bytes=4096",
                       f"--SessionConfig.screen_scrollback_lines={SCROLLBACK}",
                       env=session_env(home), cwd=str(REPO))  # fmt: skip


def reference(rows: int, cols: int, steps: list[bytes]) -> dict[str, Any]:
    return xterm_reference(rows, cols, list(steps), scrollback=SCROLLBACK)


def whole_log(home: str) -> bytes:
    data, _, _ = SessionStore(home).read_log(SID, 0, 1 << 24)
    return bytes(data)


def snapshot(client: StdioClient, **size: int) -> tuple[dict[str, Any], bytes]:
    snap = client.request("process/snapshot", {"processId": PID, **size})
    return snap, base64.b64decode(snap["chunk"])


def test_session_snapshot_from_the_supervisor_outlives_the_kernel(session_home: str) -> None:
    first = serve(session_home)
    try:
        first.request("session/create", {"id": SID, "argv": ["bash", "-c", ALT_SCRIPT],
                                         "tty": True, "size": {"rows": ROWS, "cols": COLS}})
        first.request("session/attach", {"id": SID, "fromOffset": 0})
        first.wait_output(PID, lambda d: b"frame 300" in d and d.endswith(b"xy"), timeout=30)
        snap, chunk = snapshot(first)
        assert snap["alternateScreen"] is True and snap["title"] == "the title"
        assert xterm_reference(ROWS, COLS, [chunk])["buffers"]["normal"]["length"] == 20 + ROWS
        upto = b"".join(d for s, d in outputs(first, PID) if s <= snap["seq"])
        assert_same(reference(ROWS, COLS, [chunk]), reference(ROWS, COLS, [upto]))
    finally:
        first.close()  # the kernel that created the session is gone; the session runs on

    second = serve(session_home)
    try:
        # from near the end: the bytes that drew the screen never reach this entry
        tail_start = len(whole_log(session_home)) - 1000
        second.request("session/attach", {"id": SID, "fromOffset": tail_start})
        snap, chunk = snapshot(second)
        tail = b"".join(d for s, d in outputs(second, PID) if s <= snap["seq"])
        log = whole_log(session_home)
        assert log.endswith(tail) and len(tail) < len(log)
        assert_same(reference(ROWS, COLS, [chunk]), reference(ROWS, COLS, [log]))
        mark = resubscribe(second, PID, snap["seq"])
        second.notify("process/write", {"processId": PID,
                                        "chunk": base64.b64encode(b"hi\r").decode()})
        second.wait_closed(PID, timeout=20)
        rest = continued(second, PID, mark, snap["seq"])
        assert_same(reference(ROWS, COLS, [chunk, rest]),
                    reference(ROWS, COLS, [whole_log(session_home)]))  # fmt: skip
    finally:
        second.close()
