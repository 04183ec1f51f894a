"""The cell display of %exec: head, notice, tail, whatever the chunk sizes."""

from __future__ import annotations

import pytest

from codex_exec_kernel.magics.runner import Display


@pytest.mark.parametrize("chunk", [1, 7, 333, 5000, 100_000])
def test_head_and_tail_are_bounded_for_any_chunk_size(capsys, chunk: int) -> None:
    data = b"".join(b"%06d\n" % i for i in range(20_000))  # 140,000 characters
    display = Display(limit=10_000)
    for i in range(0, len(data), chunk):
        display.write("stdout", data[i:i + chunk])
    display.finish("proc-9")
    out, err = capsys.readouterr()
    text = data.decode()
    assert out == text[:5_000] + text[-5_000:]
    assert f"{len(text) - 10_000:,} characters of output skipped" in err and "proc-9" in err


def test_small_output_is_shown_whole(capsys) -> None:
    display = Display(limit=10_000)
    display.write("stdout", "héllo ".encode()[:2])  # a UTF-8 character split across chunks
    display.write("stdout", "héllo ".encode()[2:])
    display.write("stderr", b"warn\n")
    display.finish("p")
    out, err = capsys.readouterr()
    assert out == "héllo " and err == "warn\n"
