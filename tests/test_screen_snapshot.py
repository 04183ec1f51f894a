"""process/snapshot over `codex-exec serve` (issue 14): real PTYs, real vim, less, watch.

Each scenario runs long enough that retention (4 KiB here) has evicted the bytes that
drew the first screen, then checks, cell by cell against xterm.js's headless terminal
(tests/xterm_ref/screen.mjs):
* the snapshot written into a fresh terminal == the whole output from the start, up to
  the snapshot's seq;
* after the snapshot, keystrokes reach the program, and the output after that seq
  (re-subscribed from it) arrives once, in order: snapshot + it == the whole output.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from screen_ref import differences, reference, text
from stdio_client import StdioClient

RETAINED = 4096
ROWS, COLS = 24, 80


@pytest.fixture
def client() -> Any:
    c = StdioClient(f"--ProcessTable.retained_bytes={RETAINED}")
    yield c
    c.close()


def outputs(client: StdioClient, pid: str, start: int = 0) -> list[tuple[int, bytes]]:
    return [
        (m["params"]["seq"], base64.b64decode(m["params"]["chunk"]))
        for m in client.events(pid)[start:]
        if m["method"] == "process/output"
    ]


def start(client: StdioClient, argv: list[str], rows: int = ROWS, cols: int = COLS,
          cwd: str | None = None) -> str:  # fmt: skip
    params: dict[str, Any] = {"argv": argv, "tty": True, "size": {"rows": rows, "cols": cols}}
    if cwd:
        params["cwd"] = cwd
    return str(client.request("process/start", params)["processId"])


def evicted(client: StdioClient, pid: str) -> bool:
    """Retention no longer holds the first output (what drew the first screen)."""
    read = client.request("process/read", {"processId": pid, "afterSeq": 0, "maxBytes": 1})
    return bool(read["firstRetainedSeq"] > 1)


def assert_same(got: dict[str, Any], want: dict[str, Any], **kw: Any) -> None:
    diffs = differences(got, want, **kw)
    assert not diffs, "\n".join(diffs) + "\n--- got:\n" + text(got) + "\n--- want:\n" + text(want)


def snapshot_matches(client: StdioClient, pid: str, **size: int) -> tuple[dict[str, Any], bytes]:
    """Take a snapshot and check it against the output up to its seq; (result, chunk)."""
    snap = client.request("process/snapshot", {"processId": pid, **size})
    chunk = base64.b64decode(snap["chunk"])
    whole = b"".join(d for s, d in outputs(client, pid) if s <= snap["seq"])
    assert_same(reference(snap["rows"], snap["cols"], [chunk]),
                reference(snap["rows"], snap["cols"], [whole]))  # fmt: skip
    return snap, chunk


def resubscribe(client: StdioClient, pid: str, seq: int) -> int:
    """Subscribe again from ``seq``: the index in the client's events where that begins."""
    mark = len(client.events(pid))
    client.request("process/subscribe", {"processId": pid, "afterSeq": seq})
    return mark


def continued(client: StdioClient, pid: str, mark: int, seq: int) -> bytes:
    """The output after ``seq`` as re-subscribed, checked to come once and in order."""
    after = outputs(client, pid, mark)
    seqs = [s for s, _ in after]
    events = [m["params"]["seq"] for m in client.events(pid)[mark:] if "seq" in m["params"]]
    assert events == list(range(seq + 1, seq + 1 + len(events))), events
    assert seqs == sorted(set(seqs))
    return b"".join(d for _, d in after)


def whole_output(client: StdioClient, pid: str, mark: int) -> bytes:
    """Everything the process wrote: the first subscription's output up to the
    re-subscription, then the re-subscription's (its replay overlaps the first)."""
    first = outputs(client, pid)[: sum(1 for m in client.events(pid)[:mark]
                                       if m["method"] == "process/output")]  # fmt: skip
    last = first[-1][0] if first else 0
    later = [(s, d) for s, d in outputs(client, pid, mark) if s > last]
    return b"".join(d for _, d in first + later)


def check_final(client: StdioClient, pid: str, snap: dict[str, Any], chunk: bytes,
                mark: int) -> None:  # fmt: skip
    rest = continued(client, pid, mark, snap["seq"])
    assert_same(reference(ROWS, COLS, [chunk, rest]),
                reference(ROWS, COLS, [whole_output(client, pid, mark)]))  # fmt: skip


#: vim shows the cursor again as the last thing of every redraw.
SHOWN = b"\x1b[?25h"


def numbered_file(tmp_path: Path, count: int, colours: bool = True) -> Path:
    path = tmp_path / "file.txt"
    lines = []
    for i in range(1, count + 1):
        colour = f"\x1b[3{i % 8}mcolour\x1b[0m" if colours and i % 5 == 0 else "plain"
        lines.append(f"line {i:04d} {colour} {'x' * (i % 50)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def type_and_wait(client: StdioClient, pid: str, keys: bytes, marker: bytes) -> None:
    """Type ``keys`` and wait for ``marker`` in the output that follows."""
    before = len(client.output_so_far(pid))
    client.notify("process/write", {"processId": pid, "chunk": base64.b64encode(keys).decode()})
    client.wait_output(pid, lambda data: marker in data[before:], timeout=20)


def test_vim_screen_after_eviction_then_q(client: StdioClient, tmp_path: Path) -> None:
    path = numbered_file(tmp_path, 300, colours=False)
    pid = start(client, ["vim", "-u", "NONE", "-i", "NONE", "-N", "-n", str(path)])
    client.wait_output(pid, lambda d: b"line 0020" in d and SHOWN in d, timeout=30)
    for keys in (b":set number hlsearch\r", b"G", b"/plain\r", b"gg", b"\x06"):  # ^F: page
        type_and_wait(client, pid, keys, SHOWN)
    assert evicted(client, pid)
    snap, chunk = snapshot_matches(client, pid)
    assert snap["alternateScreen"] is True
    mark = resubscribe(client, pid, snap["seq"])
    type_and_wait(client, pid, b"\x02", SHOWN)  # Ctrl-B: keys reach vim
    client.notify("process/write", {"processId": pid, "chunk": base64.b64encode(b":q\r").decode()})
    client.wait_closed(pid, timeout=20)  # vim answered :q
    check_final(client, pid, snap, chunk, mark)


def test_less_long_file(client: StdioClient, tmp_path: Path) -> None:
    path = numbered_file(tmp_path, 2000)
    pid = start(client, ["less", "-R", str(path)])
    client.wait_output(pid, lambda d: b"line 0020" in d, timeout=30)
    for page in range(2, 8):
        type_and_wait(client, pid, b" ", b"line %04d" % (page * 23 - 2))
    assert evicted(client, pid)
    snap, chunk = snapshot_matches(client, pid)
    mark = resubscribe(client, pid, snap["seq"])
    type_and_wait(client, pid, b"b", b"line 01")
    client.notify("process/write", {"processId": pid, "chunk": base64.b64encode(b"q").decode()})
    client.wait_closed(pid, timeout=20)
    check_final(client, pid, snap, chunk, mark)


def test_watch_date(make_server: Any) -> None:
    # watch redraws only what changed: little output, so a smaller retention
    client = make_server("--ProcessTable.retained_bytes=512")
    pid = start(client, ["watch", "-n0.1", "-d", "date +%T.%N"])
    client.wait_output(pid, lambda d: len(d) > 3 * 512, timeout=60)
    assert evicted(client, pid)
    snap, chunk = snapshot_matches(client, pid)
    mark = resubscribe(client, pid, snap["seq"])
    more = len(client.output_so_far(pid))
    client.wait_output(pid, lambda d: len(d) > more + 500, timeout=30)
    client.request("process/signal", {"processId": pid, "signal": "interrupt"})
    client.wait_closed(pid, timeout=20)
    check_final(client, pid, snap, chunk, mark)


ALT_SCRIPT = r"""
printf 'before \033[1;32mgreen\033[0m\r\n'
for i in $(seq 1 60); do
  printf 'history %s \033[38;5;%sm256\033[0m \033[38;2;1;2;3mrgb\033[0m\r\n' $i $i
done
printf '\033[3;20r\033[?1049h\033[2J\033[H\033[?1h\033=\033[?2004h\033[?1000h\033[?1006h'
printf '\033]2;the title\007\033[44m blue \033[0m\033[7m inverse \033[0m\r\n'
for i in $(seq 1 300); do printf '\033[5;1Hframe %s\033[K\033[2;3r\033[?25l' $i; done
printf '\033[10;79Hxy'
read line
printf '\033[?1049l\033[rback on the normal screen: %s\r\n' "$line"
"""


def test_alternate_screen_modes_and_continuation(client: StdioClient) -> None:
    pid = start(client, ["bash", "-c", ALT_SCRIPT])
    client.wait_output(pid, lambda d: b"frame 300" in d and d.endswith(b"xy"), timeout=30)
    assert evicted(client, pid)
    snap, chunk = snapshot_matches(client, pid)
    assert snap["alternateScreen"] is True and snap["title"] == "the title"
    mark = resubscribe(client, pid, snap["seq"])
    client.notify("process/write", {"processId": pid, "chunk": base64.b64encode(b"hi\r").decode()})
    client.wait_closed(pid, timeout=20)
    check_final(client, pid, snap, chunk, mark)


def test_resize_between_snapshot_and_live_output(client: StdioClient, tmp_path: Path) -> None:
    path = numbered_file(tmp_path, 300, colours=False)
    pid = start(client, ["vim", "-u", "NONE", "-i", "NONE", "-N", "-n", str(path)])
    client.wait_output(pid, lambda d: b"line 0020" in d and SHOWN in d, timeout=30)
    type_and_wait(client, pid, b"G", SHOWN)
    type_and_wait(client, pid, b"gg", SHOWN)
    snap = client.request("process/snapshot", {"processId": pid, "rows": 30, "cols": 100})
    assert (snap["rows"], snap["cols"]) == (30, 100)
    chunk = base64.b64decode(snap["chunk"])
    mark = resubscribe(client, pid, snap["seq"])
    before = len(client.output_so_far(pid))
    client.request("process/resize", {"processId": pid, "rows": 30, "cols": 100})
    client.wait_output(pid, lambda d: b"line 0029" in d[before:], timeout=20)
    rest = continued(client, pid, mark, snap["seq"])
    upto = b"".join(d for s, d in outputs(client, pid) if s <= snap["seq"])
    want = reference(ROWS, COLS, [upto, (30, 100), rest])
    got = reference(30, 100, [chunk, rest])
    diffs = [d for d in differences(got, want, viewport_only=True) if d.startswith("alternate")]
    assert got["cursor"] == want["cursor"] and not diffs, "\n".join(diffs)
    client.notify("process/write", {"processId": pid, "chunk": base64.b64encode(b":q\r").decode()})
    client.wait_closed(pid, timeout=20)


def test_not_a_tty_and_unknown_process(client: StdioClient) -> None:
    pid = client.request("process/start", {"argv": ["cat"], "tty": False})["processId"]
    reply = client.call("process/snapshot", {"processId": pid})
    assert reply["error"]["code"] == -32602 and "not a tty" in reply["error"]["message"]
    reply = client.call("process/snapshot", {"processId": "nope"})
    assert reply["error"]["code"] == -32600
    reply = client.call("process/snapshot", {"processId": pid, "rows": 0})
    assert reply["error"]["code"] == -32602
    client.request("process/closeStdin", {"processId": pid})
    client.wait_closed(pid)


def test_scrollback_limit(make_server: Any) -> None:
    """ProcessTable.screen_scrollback_lines (50 here): 300 lines keep the newest 50."""
    client = make_server("--ProcessTable.screen_scrollback_lines=50")
    pid = start(client, ["bash", "-c", "for i in $(seq 1 300); do echo \"row $i\"; done; sleep 60"])
    client.wait_output(pid, lambda d: b"row 300" in d, timeout=20)
    snap = client.request("process/snapshot", {"processId": pid})
    chunk = base64.b64decode(snap["chunk"])
    got = reference(ROWS, COLS, [chunk])
    assert got["buffers"]["normal"]["length"] == 50 + ROWS
    whole = b"".join(d for s, d in outputs(client, pid) if s <= snap["seq"])
    assert_same(got, reference(ROWS, COLS, [whole], scrollback=50))
    client.request("process/terminate", {"processId": pid})


FLOOD_SCRIPT = r"""
printf '\033[?1049h\033[?1h\033[?2004h\033]2;flooding\007'
seq 1 300000
printf '\033[?1h\033[Hdone\n'
sleep 60
"""


def test_flood_past_the_backlog_keeps_modes_and_screen(make_server: Any) -> None:
    """ProcessTable.screen_backlog_bytes (64 KiB here) passed ~30 times by a 2 MB flood:
    the model skips (rebuilt from the newest screen_rebuild_bytes), the modes set before
    the flood are kept, and the visible screen is still the reference's."""
    client = make_server("--ProcessTable.screen_backlog_bytes=65536",
                         "--ProcessTable.screen_rebuild_bytes=8192")  # fmt: skip
    pid = start(client, ["bash", "-c", FLOOD_SCRIPT])
    client.wait_output(pid, lambda d: b"done" in d, timeout=60)
    snap = client.request("process/snapshot", {"processId": pid})
    assert snap["alternateScreen"] is True and snap["title"] == "flooding"
    chunk = base64.b64decode(snap["chunk"])
    whole = b"".join(d for s, d in outputs(client, pid) if s <= snap["seq"])
    got, want = reference(ROWS, COLS, [chunk]), reference(ROWS, COLS, [whole])
    assert got["modes"] == want["modes"] and got["modes"]["applicationCursorKeysMode"]
    assert_same(got, want, viewport_only=True)
    client.request("process/terminate", {"processId": pid})
