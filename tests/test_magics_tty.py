"""%exec in a real kernel: --tty output rendered like a terminal, capture like IPython's
SList, the PTY default as a trait."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client import BlockingKernelClient
from kernel_helpers import running_kernel

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRESS = f"{sys.executable} {os.path.join(HERE, 'progress_bar.py')}"
CURSOR_OR_ERASE = re.compile(r"\r|\x1b\[[0-9;?]*[A-HJKSTfhlnsu]")


@pytest.fixture(scope="module")
def kc() -> Iterator[BlockingKernelClient]:
    with running_kernel() as client:
        # these requests name no cell (as from a console): render anyway
        client.execute_interactive("%config ExecMagics.tty_render = 'always'", timeout=60)
        yield client


def run(kc: BlockingKernelClient, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    msgs: list[dict[str, Any]] = []
    reply = kc.execute_interactive(code, timeout=120, output_hook=msgs.append)
    return reply["content"], msgs


def value(kc: BlockingKernelClient, expr: str) -> str:
    content, msgs = run(kc, expr)
    assert content["status"] == "ok", content
    return "".join(m["content"]["data"]["text/plain"] for m in msgs
                   if m["msg_type"] == "execute_result")  # fmt: skip


def test_progress_bar_updates_in_place_and_leaves_the_final_frame(kc) -> None:
    content, msgs = run(kc, f"%exec --tty {PROGRESS} 30 0.05")
    assert content["status"] == "ok"
    kinds = [m["msg_type"] for m in msgs if m["msg_type"] not in ("status", "execute_input")]
    assert kinds[0] == "display_data" and "stream" not in kinds
    ids = {m["content"]["transient"]["display_id"] for m in msgs
           if m["msg_type"] in ("display_data", "update_display_data")}  # fmt: skip
    assert len(ids) == 1  # one output, updated in place
    frames = [m["content"]["data"]["text/plain"] for m in msgs
              if m["msg_type"] in ("display_data", "update_display_data")]  # fmt: skip
    assert len(frames) >= 4  # it moved while the command ran
    percents = [int(p) for f in frames for p in re.findall(r"(\d+)%$", f, re.M)]
    assert percents == sorted(percents) and percents[-1] == 100 and percents[0] < 100
    final = frames[-1]
    assert not CURSOR_OR_ERASE.search(final), repr(final)
    assert final.splitlines()[0] == "Collecting example-package"
    assert final.splitlines()[-1] == "Saved ./example_package-1.0-py3-none-any.whl"
    assert "\x1b[0;32m5.0/5.0 MB\x1b[0m 100%" in final  # SGR colours kept
    assert len(final.splitlines()) == 3  # only the final frame of the bar


def test_capture_of_a_tty_is_the_rendered_text_and_raw_on_request(kc) -> None:
    run(kc, f"r = %exec --tty --capture --quiet {PROGRESS} 5 0")
    text = value(kc, "r.stdout")
    assert "\\r" not in text and "\\x1b" not in text and "100%" in text
    assert value(kc, "len(r.stdout.l)") == "3"
    run(kc, f"raw = %exec --tty --capture --raw --quiet {PROGRESS} 5 0")
    assert value(kc, "raw.stdout.count('\\r') >= 6") == "True"


def test_capture_behaves_like_an_slist_and_returns_on_failure(kc, tmp_path) -> None:
    run(kc, "r = %exec --capture --quiet printf 'alpha 1\\nbeta 2\\ngamma 3\\n'")
    assert value(kc, "list(r.stdout)") == "['alpha 1', 'beta 2', 'gamma 3']"
    assert value(kc, "r.stdout.grep('a 2')") == "['beta 2']"
    assert value(kc, "r.stdout.fields(1)") == "['1', '2', '3']"
    assert value(kc, "r.stdout.s") == "'alpha 1 beta 2 gamma 3'"
    assert value(kc, "r.stdout.n") == "'alpha 1\\nbeta 2\\ngamma 3'"
    assert value(kc, "type(r.stdout.l).__name__") == "'SList'"
    # the README's example, where git fails: the result comes back, the cell succeeds
    content, _ = run(kc, f"%cd {tmp_path}\nr = %exec --capture --quiet git status --porcelain\n"
                         "r.exit_code")  # fmt: skip
    assert content["status"] == "ok"
    assert value(kc, "r.exit_code") == "128"
    content, _ = run(kc, "r.check()")
    assert content["status"] == "error" and content["ename"] == "CalledProcessError"
    run(kc, "ok = %exec --capture --quiet true")
    assert value(kc, "ok.check().exit_code") == "0"
    content, _ = run(kc, "%exec --quiet exit 3")  # without --capture it still fails
    assert content["status"] == "error"


def test_the_pty_default_is_a_trait(kc) -> None:
    probe = "python -c 'import sys; print(sys.stdout.isatty())'"

    def isatty(options: str = "") -> str:
        run(kc, f"t = %exec --capture --quiet {options} {probe}")
        return value(kc, "t.stdout")

    assert isatty() == "'False\\n'"
    run(kc, "%config ExecMagics.tty = True")
    try:
        assert isatty() == "'True\\n'"
        assert isatty("--no-tty") == "'False\\n'"
    finally:
        run(kc, "%config ExecMagics.tty = False")


def test_a_tty_flood_keeps_head_and_tail_lines(kc) -> None:
    run(kc, "%config ExecMagics.max_output_bytes = 20000")
    try:
        content, msgs = run(kc, "%exec --tty seq 1 200000")
    finally:
        run(kc, "%config ExecMagics.max_output_bytes = 1 << 20")
    assert content["status"] == "ok"
    final = [m["content"]["data"]["text/plain"] for m in msgs
             if m["msg_type"] in ("display_data", "update_display_data")][-1]  # fmt: skip
    lines = final.splitlines()
    assert lines[:3] == ["1", "2", "3"] and lines[-2:] == ["199999", "200000"]
    notice = [line for line in lines if "skipped" in line]
    assert len(notice) == 1 and "bytes" in notice[0] and "lines" in notice[0]
    numbers = [int(x) for x in lines if x.isdigit()]
    assert len(numbers) == len(lines) - 1  # whole lines only
    assert 15_000 < len(final.encode()) < 20_000 + 4096 + 500


def outputs_of(kc: BlockingKernelClient, code: str, metadata: dict) -> list[str]:
    msg = kc.session.msg("execute_request", {"code": code, "silent": False,
                                              "store_history": False, "allow_stdin": False,
                                              "stop_on_error": True}, metadata=metadata)
    kc.shell_channel.send(msg)
    kinds = []
    while True:
        m = kc.get_iopub_msg(timeout=60)
        if m["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
            continue
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            return kinds
        kinds.append(m["msg_type"])


def test_auto_renders_for_notebook_cells_and_passes_bytes_to_terminals(kc) -> None:
    run(kc, "%config ExecMagics.tty_render = 'auto'")
    try:
        code = "%exec --tty printf 'a\\rb\\n'"
        assert "display_data" in outputs_of(kc, code, {"cellId": "c1"})  # a notebook
        console = outputs_of(kc, code, {})  # jupyter console: it renders the bytes itself
        assert "stream" in console and "display_data" not in console
    finally:
        run(kc, "%config ExecMagics.tty_render = 'always'")
