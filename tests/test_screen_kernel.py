"""process/snapshot in a real kernel (jupyter_client, the comm, binary buffers): a second
viewer of vim starts from the snapshot after retention evicted the first screen, its
keys reach vim (``:q``), and the output after the seq continues the screen exactly."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kernel_helpers import RawComm, blocking_client, ready_client, start_kernel
from screen_ref import reference
from test_screen_snapshot import SHOWN, assert_same, numbered_file

ROWS, COLS = 24, 80


@pytest.fixture
def kernel() -> Iterator[Any]:
    km = start_kernel(extra_arguments=["--ExecService.retained_bytes=4096"])
    kc = ready_client(km)
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def outputs(raw: RawComm, pid: str) -> list[tuple[int, bytes]]:
    out = []
    for note, bufs in zip(raw.notes, raw.note_buffers, strict=True):
        p = note["params"]
        if note["method"] == "process/output" and p["processId"] == pid:
            out.append((p["seq"], bufs[p["chunk"]["buffer"]]))
    return out


def type_and_wait(raw: RawComm, pid: str, keys: bytes) -> None:
    before = len(raw.output_of(pid))
    raw.notify("process/write", {"processId": pid, "chunk": base64.b64encode(keys).decode()})
    raw.wait_note(lambda n: SHOWN in raw.output_of(pid)[before:], timeout=30)


def test_second_viewer_of_vim_starts_from_the_snapshot(kernel: Any, tmp_path: Path) -> None:
    path = numbered_file(tmp_path, 300, colours=False)
    km, kc = kernel
    first = RawComm(kc)
    pid = first.request("process/start", {
        "argv": ["vim", "-u", "NONE", "-i", "NONE", "-N", "-n", str(path)], "tty": True,
        "size": {"rows": ROWS, "cols": COLS}})["processId"]  # fmt: skip
    first.wait_note(lambda n: SHOWN in first.output_of(pid), timeout=60)
    for keys in (b":set number hlsearch\r", b"G", b"/plain\r", b"gg", b"\x06"):
        type_and_wait(first, pid, keys)
    read = first.request("process/read", {"processId": pid, "afterSeq": 0, "maxBytes": 1})
    assert read["firstRetainedSeq"] > 1  # the first screen's bytes are gone

    # a second viewer (a reload, %attach...), with its own IOPub subscription
    second_kc = blocking_client(km)
    second = RawComm(second_kc)
    reply, buffers = second.call("process/snapshot", {"processId": pid})
    snap = reply["result"]
    chunk = buffers[snap["chunk"]["buffer"]]
    assert snap["alternateScreen"] is True and (snap["rows"], snap["cols"]) == (ROWS, COLS)
    upto = b"".join(d for s, d in outputs(first, pid) if s <= snap["seq"])
    assert_same(reference(ROWS, COLS, [chunk]), reference(ROWS, COLS, [upto]))

    second.request("process/subscribe", {"processId": pid, "afterSeq": snap["seq"]})
    type_and_wait(second, pid, b"\x02")
    second.notify("process/write", {"processId": pid,
                                    "chunk": base64.b64encode(b":q\r").decode()})  # fmt: skip
    second.wait_note(lambda n: n["method"] == "process/closed", timeout=30)  # vim quit
    seqs = [n["params"]["seq"] for n in second.notes if "seq" in n["params"]]
    assert seqs == list(range(snap["seq"] + 1, snap["seq"] + 1 + len(seqs)))
    rest = b"".join(d for _, d in outputs(second, pid))
    first.wait_note(lambda n: n["method"] == "process/closed", timeout=30)
    whole = b"".join(d for _, d in outputs(first, pid))
    assert_same(reference(ROWS, COLS, [chunk, rest]), reference(ROWS, COLS, [whole]))
    second_kc.stop_channels()
