"""The screen model and its renderer against xterm.js, sequence by sequence (issue 14).

Each case is fed to a ``ScreenFeeder`` and, separately, to a fresh @xterm/headless;
the snapshot written into another fresh terminal must give the same cells (chars and
attributes of both buffers), cursor, active buffer, modes and title. Then the feeder's
limits: a backlog past ``backlog_bytes`` is skipped with the modes kept, and resizes
apply at their place in the output.
"""

from __future__ import annotations

import asyncio

import pytest
from screen_ref import differences, reference

from codex_exec_kernel.screen.feeder import ScreenFeeder, ScreenSettings

ROWS, COLS = 8, 30

CASES = {
    "wide and combining": "日本語 e\u0301 ok\r\n漢字" + "x" * 27 + "漢",
    "pending wrap on the last line": "\x1b[8;1H" + "y" * 30,
    "REP": "ab\x1b[5b\r\n-\x1b[3b",
    "SU and SD": "".join(f"line {i}\r\n" for i in range(7)) + "\x1b[2S\x1b[1T",
    "saved cursors in both buffers": "\x1b[3;5Hsave\x1b7\x1b[1;1H\x1b[?1049h\x1b[5;5H\x1b7alt"
                                     "\x1b[1;1H",
    "47 keeps the cursor, no save": "\x1b[4;4Hnormal\x1b[?47hX",
    "47 then leave": "\x1b[4;4Hnormal\x1b[?47hX\x1b[?47lY",
    "origin mode and margins": "\x1b[3;6r\x1b[?6h\x1b[2;2Hin region",
    "insert mode": "abcdef\x1b[1;3H\x1b[4hXY",
    "attributes": "\x1b[1;2;3;4;5;7;9mall\x1b[0m \x1b[8mhid\x1b[0m \x1b[38;5;196;48;2;1;2;3mc"
                  "\x1b[0m \x1b[93;104mbright\x1b[39;49m",
    "erase with a background": "\x1b[44m\x1b[2J\x1b[3;1Hblue\x1b[K\x1b[0m",
    "tabs": "a\tb\tc\r\n\x1b[3g\x1b[1;10H\x1bH\r\tx",
    "reset": "junk\x1b[?1h\x1b[44m\x1bcafter",
    "region from the top scrolls into history": "\x1b[1;5r" + "".join(f"r{i}\r\n" for i in
                                                                   range(12)),
    "modes": "\x1b[?1h\x1b=\x1b[?2004h\x1b[?1002h\x1b[?1006h\x1b[?25l\x1b[?7l\x1b]2;t\x07",
    "DECCOLM ignored": "\x1b[?3hstill 30 columns",
}


def snapshot(steps: list[bytes | tuple[int, int]], settings: ScreenSettings | None = None,
             rows: int = ROWS, cols: int = COLS) -> tuple[int, bytes, ScreenFeeder]:  # fmt: skip
    async def run() -> tuple[int, bytes, ScreenFeeder]:
        feeder = ScreenFeeder(asyncio.get_running_loop(), rows, cols, settings)
        for mark, step in enumerate(steps, 1):
            if isinstance(step, tuple):
                feeder.resize(*step, mark - 1)
            else:
                feeder.push(step, mark)
        mark, chunk = await feeder.snapshot(len(steps))
        feeder.close()
        return mark, chunk, feeder

    return asyncio.run(run())


@pytest.mark.parametrize("name", list(CASES))
def test_sequence_matches_xterm(name: str) -> None:
    data = CASES[name].encode()
    _, chunk, _ = snapshot([data])
    diffs = differences(reference(ROWS, COLS, [chunk]), reference(ROWS, COLS, [data]))
    assert not diffs, "\n".join(diffs)


def test_skip_keeps_modes_and_rebuilds_from_the_tail() -> None:
    settings = ScreenSettings(backlog_bytes=4096, rebuild_bytes=512)
    head = b"\x1b[?1049h\x1b[?1h\x1b[?2004h\x1b]2;kept\x07"
    flood = [b"".join(b"row %d\r\n" % (i * 100 + j) for j in range(100)) for i in range(20)]
    mark, chunk, feeder = snapshot([head, *flood], settings)
    assert mark == 1 + len(flood) and feeder.skipped_bytes > 0
    got = reference(ROWS, COLS, [chunk])
    want = reference(ROWS, COLS, [head, *flood])
    assert got["active"] == "alternate" and got["title"] == "kept"
    assert got["modes"] == want["modes"]
    assert not differences(got, want, viewport_only=True)


def test_resizes_apply_at_their_place() -> None:
    before = b"".join(b"wide line %d " % i + b"=" * 40 + b"\r\n" for i in range(6))
    after = b"\x1b[H\x1b[2Jredrawn at 10x50\r\n" + b"-" * 50
    _, chunk, feeder = snapshot([before, (10, 50), after])
    assert (feeder.model.lines, feeder.model.columns) == (10, 50)
    got = reference(10, 50, [chunk])
    want = reference(ROWS, COLS, [before, (10, 50), after])
    assert not differences(got, want, viewport_only=True)
