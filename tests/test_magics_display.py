"""The cell display of %exec: head, notice, tail (bytes, cut at line ends), any chunking;
and PTY output rendered as a terminal shows it."""

from __future__ import annotations

import re

import pytest

from codex_exec_kernel.magics.outputlimit import HeadTail
from codex_exec_kernel.magics.runner import Display
from codex_exec_kernel.magics.terminal_text import TerminalText, plain, rendered_text


@pytest.mark.parametrize("chunk", [1, 7, 333, 5000, 100_000])
def test_head_and_tail_are_bounded_lines_for_any_chunk_size(capsys, chunk: int) -> None:
    data = b"".join(b"%06d\n" % i for i in range(20_000))  # 140,000 bytes, 7 per line
    display = Display(limit=10_000)
    for i in range(0, len(data), chunk):
        display.write("stdout", data[i:i + chunk])
    display.finish("proc-9")
    out, err = capsys.readouterr()
    numbers = [int(line) for line in out.splitlines()]
    assert out.endswith("\n") and all(len(line) == 6 for line in out.splitlines())
    gap = next(i for i in range(1, len(numbers)) if numbers[i] != numbers[i - 1] + 1)
    head, tail = numbers[:gap], numbers[gap:]
    assert head[0] == 0 and tail[-1] == 19_999  # whole lines, first and last
    # bytes, 7 per line; a line the head has begun is finished
    assert len(head) in (5_000 // 7, 5_000 // 7 + 1) and len(tail) == 5_000 // 7
    skipped = len(data) - len(out)
    assert f"{skipped:,} bytes ({skipped // 7:,} lines) of output skipped" in err
    assert "proc-9" in err


def test_the_limit_counts_bytes_not_characters(capsys) -> None:
    data = "é\n".encode() * 10_000  # 3 bytes, 2 characters per line
    display = Display(limit=3_000)
    display.write("stdout", data)
    display.finish("p")
    out, err = capsys.readouterr()
    assert len(out.encode()) == 3_000 and out.endswith("é\n")
    assert f"{len(data) - 3_000:,} bytes" in err


def test_one_line_longer_than_the_limit_is_cut_inside() -> None:
    budget = HeadTail(100)
    assert budget.add("stdout", b"x" * 1000) == b""  # the head stops at a line start
    assert budget.take_tail() == [("stdout", b"x" * 50)]


def test_small_output_is_shown_whole(capsys) -> None:
    display = Display(limit=10_000)
    display.write("stdout", "héllo ".encode()[:2])  # a UTF-8 character split across chunks
    display.write("stdout", "héllo ".encode()[2:])
    display.write("stderr", b"warn\n")
    display.finish("p")
    out, err = capsys.readouterr()
    assert out == "héllo " and err == "warn\n"


def test_terminal_text_keeps_final_frames_and_colours_only() -> None:
    term = TerminalText(rows=24)
    for i in range(0, 101, 5):  # a pip/tqdm-style bar: \r, erase, colours
        term.feed(f"\r\x1b[2K {i:3d}% \x1b[32m{'#' * (i // 5)}\x1b[0m\x1b[?25l".encode())
    term.feed(b"\x1b[?25h\r\ndone\r\n")
    lines = term.take_final() + term.screen_lines()
    assert lines == [" 100% \x1b[0;32m####################\x1b[0m", "done"]
    assert all(not re.search(r"\x1b\[[0-9;?]*[A-Za-ln-z]|\r", line) for line in lines)


def test_terminal_text_redraws_lines_above_like_a_terminal() -> None:
    term = TerminalText(rows=5)
    term.feed(b"a 0%\r\nb 0%\r\n")
    term.feed(b"\x1b[2A\x1b[2Ka 100%\r\n\x1b[2Kb 100%\r\n")  # two bars, redrawn in place
    assert term.take_final() + term.screen_lines() == ["a 100%", "b 100%"]


@pytest.mark.parametrize("chunk", [1, 77, 4096, 1 << 20])
def test_a_flood_through_the_fast_path_is_exact(chunk: int) -> None:
    """The same lines whether pyte draws them or the fast path takes them."""
    lines = [f"{i:08d} \x1b[3{i % 8}mcol\x1b[0m" if i % 3 else f"line\t{i}  " for i in range(3000)]
    data = "".join(line + "\r\n" for line in lines).encode()
    term = TerminalText(rows=24)
    for i in range(0, len(data), chunk):
        term.feed(data[i:i + chunk])
    got = [plain(x) for x in term.take_final() + term.screen_lines()]
    assert got == [plain(x).expandtabs().rstrip(" ") for x in lines]
    assert rendered_text(data, 24) == "".join(x + "\n" for x in got)
