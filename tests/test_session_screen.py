"""A session's screen for a reader: ``%logs`` / ``codex-exec session logs`` give the text a
TTY session's terminal showed (``--raw``: the bytes as logged)."""

from __future__ import annotations

import os
import subprocess

from kernel_helpers import blocking_client, start_kernel
from sessions_helpers import CLI, run_cli, session_env
from waiting import scaled, wait_until

from codex_exec_kernel.sessions.api import SessionManager

pytest_plugins = ["sessions_fixtures"]

#: Progress frames over one line, an erased line redrawn, colours: what a TTY log holds.
DRAWING = (
    r"printf 'step 1\rstep 2\rstep 3 done\n'; printf 'gone\033[2K\rkept\n'; "
    r"printf '\033[31mred\033[0m end\n'"
)
#: What a terminal shows of it.
SHOWN = "step 3 done\nkept\nred end\n"


def _drawn_session(home: str, manager: SessionManager, sid: str) -> None:
    result = run_cli(home, "create", "--id", sid, "--tty", "--", "sh", "-c", DRAWING)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: manager.get(sid).status == "exited", message="the session's exit")


def test_cli_logs_of_a_tty_session_are_the_text_shown(manager: SessionManager,
                                                     session_home: str) -> None:  # fmt: skip
    _drawn_session(session_home, manager, "drawn")
    plain = run_cli(session_home, "logs", "drawn")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == SHOWN
    assert run_cli(session_home, "logs", "drawn", "--tail", "2").stdout == "kept\nred end\n"
    raw = subprocess.run([*CLI, "logs", "drawn", "--raw"], env=session_env(session_home),
                         capture_output=True, timeout=scaled(30), check=True)  # fmt: skip
    assert b"step 1\rstep 2\r" in raw.stdout and b"\x1b[31mred" in raw.stdout
    assert raw.stdout == manager.read_log("drawn").data


def test_percent_logs_plain_and_raw(manager: SessionManager, session_home: str) -> None:
    _drawn_session(session_home, manager, "drawn-nb")
    km = start_kernel(env=dict(os.environ, CODEX_EXEC_HOME=session_home))
    kc = blocking_client(km)
    try:

        def shown(code: str) -> str:
            out: list[str] = []
            reply = kc.execute_interactive(
                code, timeout=scaled(30),
                output_hook=lambda m: out.append(m["content"].get("text", "")),
            )  # fmt: skip
            assert reply["content"]["status"] == "ok", reply["content"]
            return "".join(out)

        assert shown("%logs drawn-nb") == SHOWN
        assert shown("%logs drawn-nb --tail 1") == "red end\n"
        raw = shown("%logs drawn-nb --raw")
        assert "step 1\rstep 2\r" in raw and "\x1b[31mred" in raw
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
