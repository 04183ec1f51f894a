"""A session's screen for a reader: ``%logs`` / ``codex-exec session logs`` give the text a
TTY session's terminal showed (``--raw``: the bytes as logged)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from kernel_helpers import blocking_client, start_kernel
from screen_programs import VIM_REDRAWS, long_file, vim_argv
from sessions_helpers import CLI, REPO, run_cli, session_env
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


def create_session(home: str, *args: str) -> str:
    result = run_cli(home, "create", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


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
        # %attach of the ended TTY session: its log rendered, then how it ended.
        attached: list[dict] = []
        kc.execute_interactive("%attach drawn-nb", timeout=scaled(30),
                               output_hook=lambda m: attached.append(m))  # fmt: skip
        texts = [m["content"]["data"]["text/plain"] for m in attached
                 if m["msg_type"] in ("display_data", "update_display_data")]  # fmt: skip
        assert texts and "step 3 done\nkept\n" in texts[-1] and "step 1" not in texts[-1]
        said = "".join(m["content"].get("text", "") for m in attached if m["msg_type"] == "stream")
        assert "[session drawn-nb exited, exit code 0]" in said
        assert shown("%logs drawn-nb --tail 1") == "red end\n"
        raw = shown("%logs drawn-nb --raw")
        assert "step 1\rstep 2\r" in raw and "\x1b[31mred" in raw
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.skipif(shutil.which("tmux") is None or shutil.which("vim") is None,
                    reason="needs tmux and vim (make test installs them with apt-get)")  # fmt: skip
def test_cli_attach_shows_a_full_screen_program_at_once(manager: SessionManager,
                                                       session_home: str, tmp_path: Path
                                                       ) -> None:  # fmt: skip
    path = long_file(tmp_path)
    sid = create_session(session_home, "--tty", "--size", "30x90", "--env", "TERM=xterm-256color",
                         "--", *vim_argv(path, VIM_REDRAWS))  # fmt: skip
    wait_until(lambda: manager.get(sid).output_bytes > 256 * 1024, timeout=60,
               message="vim's redraws")  # fmt: skip
    socket_name = f"cxsnap{os.getpid()}"
    tmux = ["tmux", "-L", socket_name, "-f", "/dev/null"]
    env = session_env(session_home)
    command = " ".join(CLI) + f" attach {sid}; echo ATTACH-RC=$?; exec sleep 300"
    # The pane has the session's size: what it shows comes from the snapshot alone
    # (no SIGWINCH, so vim does not redraw).
    subprocess.run([*tmux, "new-session", "-d", "-x", "90", "-y", "30", "-c", str(REPO),
                    command], env={**env, "TERM": "xterm-256color"}, check=True)  # fmt: skip

    def pane(what: str = "") -> str:
        args = ["display", "-p", what] if what else ["capture-pane", "-p"]
        return subprocess.run([*tmux, *args], capture_output=True, text=True, env=env).stdout

    try:
        wait_until(lambda: "line 29 of the long file" in pane(), timeout=30,
                   message="vim's screen in the pane")  # fmt: skip
        rows = pane().splitlines()
        assert rows[0].startswith("line 1 of the long file"), pane()
        assert pane("#{alternate_on}").strip() == "1", "not on the alternate screen"
        subprocess.run([*tmux, "send-keys", ":echo 'tmux-' . (6*7)", "Enter"], env=env,
                       check=True)  # fmt: skip
        wait_until(lambda: "tmux-42" in pane(), message="vim's answer")
        subprocess.run([*tmux, "send-keys", ":q", "Enter"], env=env, check=True)
        wait_until(lambda: "ATTACH-RC=0" in pane(), message="the end of the session")
        assert "exited with code 0" in pane()
        assert pane("#{alternate_on}").strip() == "0"
    finally:
        subprocess.run([*tmux, "kill-server"], env=env, capture_output=True)


def test_percent_attach_shows_the_screen_at_once(manager: SessionManager, session_home: str,
                                                 tmp_path: Path) -> None:  # fmt: skip
    path = long_file(tmp_path)
    sid = create_session(session_home, "--tty", "--size", "30x90", "--env", "TERM=xterm-256color",
                         "--", *vim_argv(path, VIM_REDRAWS))  # fmt: skip
    wait_until(lambda: manager.get(sid).output_bytes > 256 * 1024, timeout=60,
               message="vim's redraws")  # fmt: skip
    km = start_kernel(env=dict(os.environ, CODEX_EXEC_HOME=session_home))
    kc = blocking_client(km)
    try:
        msg_id = kc.execute(f"%attach {sid}")
        shown: list[str] = []
        while not shown:
            msg = kc.get_iopub_msg(timeout=scaled(30))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            assert msg["msg_type"] not in ("stream", "error"), msg["content"]
            if msg["msg_type"] in ("display_data", "update_display_data"):
                shown.append(msg["content"]["data"]["text/plain"])
        # The first display is vim's whole screen, from the top of the file.
        lines = shown[0].splitlines()
        assert lines[0] == "line 1 of the long file", shown[0]
        assert lines[28] == "line 29 of the long file", shown[0]
        # Interrupt (the stop button) detaches; the session keeps running.
        km.interrupt_kernel()
        said = ""
        while "[detached from" not in said:
            msg = kc.get_iopub_msg(timeout=scaled(30))
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                said += msg["content"]["text"]
        assert manager.get(sid).status == "running"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
