"""Help, inspection, completion and usage errors of every magic, in a real kernel."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client import BlockingKernelClient
from kernel_helpers import reply_to, running_kernel

MAGICS = ("exec", "sessions", "attach", "logs", "terminal")


@pytest.fixture(scope="module")
def kc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlockingKernelClient]:
    bindir = tmp_path_factory.mktemp("bin")
    tool = bindir / "zzcodexprobe-tool"
    tool.write_text("#!/bin/sh\necho probe\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    with running_kernel(env=env) as client:
        yield client


def request(kc: BlockingKernelClient, msg_type: str, **content: Any) -> dict[str, Any]:
    msg = kc.session.msg(msg_type, content)
    kc.shell_channel.send(msg)
    return reply_to(kc, msg["header"]["msg_id"])["content"]


@pytest.mark.parametrize("magic", MAGICS)
def test_every_magic_has_its_help_through_question_mark(kc, magic: str) -> None:
    reply = kc.execute_interactive(f"%{magic}?", timeout=30)
    pages = [p["data"]["text/plain"] for p in reply["content"]["payload"]
             if p.get("source") == "page"]  # fmt: skip
    assert pages and "<no docstring>" not in pages[0], pages
    assert f"usage: %{magic}" in pages[0]


@pytest.mark.parametrize("code", ["%exec", "%exec ls -la", "r = %exec --capture ls",
                                  "%%exec bash\necho hi"])  # fmt: skip
def test_shift_tab_shows_the_magic_not_the_builtin(kc, code: str) -> None:
    reply = request(kc, "inspect_request", code=code, cursor_pos=len(code), detail_level=0)
    text = reply["data"]["text/plain"]
    assert reply["found"] and "usage: %exec" in text and "Execute the given source" not in text


def test_shift_tab_elsewhere_is_unchanged(kc) -> None:
    reply = request(kc, "inspect_request", code="exec", cursor_pos=4, detail_level=0)
    assert "usage: %exec" not in reply["data"]["text/plain"]


def complete(kc: BlockingKernelClient, code: str) -> list[str]:
    return request(kc, "complete_request", code=code, cursor_pos=len(code))["matches"]


def test_tab_completes_commands_from_path_then_paths(kc, tmp_path) -> None:
    assert "zzcodexprobe-tool" in complete(kc, "%exec zzcodexpro")
    assert "zzcodexprobe-tool" in complete(kc, "%exec --tty --cwd /tmp zzcodexpro")
    (tmp_path / "zzdata-file.txt").write_text("x")
    kc.execute_interactive(f"%cd {tmp_path}", timeout=30)
    matches = complete(kc, "%exec cat zzdata")
    assert "zzdata-file.txt" in matches
    assert "zzcodexprobe-tool" not in complete(kc, "%exec cat zzcodexpro")


@pytest.mark.parametrize("code", ["%exec --bogus ls", "%sessions --bogus", "%attach",
                                  "%logs --tail x s", "%terminal --bogus",
                                  "%sessions --delete 'unbalanced"])  # fmt: skip
def test_a_usage_error_fails_the_cell(kc, code: str) -> None:
    reply = kc.execute_interactive(code, timeout=30)
    assert reply["content"]["status"] == "error", code
    assert reply["content"]["ename"] == "ExecFailed"
    assert "usage:" in reply["content"]["evalue"] or "quotation" in reply["content"]["evalue"]


@pytest.mark.parametrize("magic", MAGICS)
def test_help_option_prints_and_succeeds(kc, magic: str) -> None:
    out: list[str] = []
    reply = kc.execute_interactive(f"%{magic} --help", timeout=30, output_hook=lambda m: out.append(
        m["content"].get("text", "")) if m["msg_type"] == "stream" else None)  # fmt: skip
    assert reply["content"]["status"] == "ok" and f"usage: %{magic}" in "".join(out)
