"""``codex-exec session ...`` as a user runs it: real CLI processes, tmux and a PTY."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import time

import pytest
from sessions_helpers import CLI, REPO, run_cli, session_env
from waiting import pid_alive, scaled, wait_until

from codex_exec_kernel.pgroup import group_alive
from codex_exec_kernel.sessions.api import SessionManager

pytest_plugins = ["sessions_fixtures"]


def create(home: str, *args: str) -> str:
    result = run_cli(home, "create", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_create_outlives_a_killed_starter_shell(manager: SessionManager, session_home: str) -> None:
    starter = subprocess.Popen(
        ["sh", "-c", " ".join(CLI) + " create --id kept -- sleep 300; exec sleep 600"],
        stdout=subprocess.PIPE, env=session_env(session_home), cwd=str(REPO),
        start_new_session=True,
    )  # fmt: skip
    assert starter.stdout is not None
    assert starter.stdout.readline().strip() == b"kept"
    os.killpg(starter.pid, signal.SIGKILL)
    starter.wait(scaled(10))
    info = manager.get("kept")
    assert info.status == "running" and pid_alive(info.meta.pid)


def test_list_table_and_json(manager: SessionManager, session_home: str) -> None:
    first = create(session_home, "--", "sh", "-c", "echo hi; exit 7")
    second = create(session_home, "--id", "tabby", "--tty", "--", "sleep", "300")
    assert re.fullmatch(r"[a-z]+-[a-z]+", first)
    wait_until(lambda: manager.get(first).status == "exited", message="exit")
    result = run_cli(session_home, "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["#", "ID", "PID", "STATUS", "EXIT", "OUTPUT", "CREATED", "COMMAND"]
    row0, row1 = lines[1].split(), lines[2].split()
    assert row0[:2] == ["0", second] and row0[3:5] == ["running", "-"]
    assert row1[:2] == ["1", first] and row1[3:6] == ["exited", "7", "3B"]
    assert lines[2].endswith("sh -c 'echo hi; exit 7'")
    data = json.loads(run_cli(session_home, "list", "--json").stdout)
    by_id = {s["id"]: s for s in data["sessions"]}
    assert by_id[first]["exitCode"] == 7 and by_id[first]["outputBytes"] == 3
    assert by_id[second]["tty"] is True and by_id[second]["status"] == "running"


def test_create_options(manager: SessionManager, session_home: str, tmp_path) -> None:
    sid = create(session_home, "--cwd", str(tmp_path), "--env", "GREETING=hola", "--",
                 "sh", "-c", 'echo "$GREETING from $(pwd)"')  # fmt: skip
    wait_until(lambda: manager.get(sid).status == "exited", message="exit")
    assert manager.read_log(sid).data == f"hola from {tmp_path}\n".encode()
    result = run_cli(session_home, "create", "--")
    assert result.returncode == 1 and "no command" in result.stderr
    result = run_cli(session_home, "create", "--", "no-such-program-xyz")
    assert result.returncode == 1 and "no such file" in result.stderr
    assert [i.id for i in manager.list()] == [sid]


@pytest.mark.parametrize("bad", ["../x", "", "a" * 65, "with space"])
def test_bad_ids_refused(manager: SessionManager, session_home: str, bad: str) -> None:
    result = run_cli(session_home, "create", "--id", bad, "--", "true")
    assert result.returncode == 1
    assert "invalid session id" in result.stderr
    assert manager.list() == []


def test_logs_tail_and_follow(manager: SessionManager, session_home: str) -> None:
    sid = create(session_home, "--", "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done")
    wait_until(lambda: manager.get(sid).status == "exited", message="exit")
    assert run_cli(session_home, "logs", sid).stdout == "".join(f"line{i}\n" for i in range(1, 6))
    assert run_cli(session_home, "logs", sid, "--tail", "2").stdout == "line4\nline5\n"
    assert run_cli(session_home, "logs", sid, "--tail", "9").stdout.count("\n") == 5

    slow = create(session_home, "--", "sh", "-c", "echo a; read x; echo b; read y; echo c")
    follower = subprocess.Popen(
        [*CLI, "logs", "-f", slow], stdout=subprocess.PIPE, env=session_env(session_home),
        cwd=str(REPO),
    )  # fmt: skip
    assert follower.stdout is not None
    out_fd = follower.stdout.fileno()
    seen = bytearray()
    _read_pty(out_fd, b"a\n", buf=seen)

    async def feed(data: bytes) -> None:
        client = await manager.attach(slow)
        client.write(data)
        client.close()

    import asyncio

    asyncio.run(feed(b"1\n"))
    _read_pty(out_fd, b"a\nb\n", buf=seen)
    assert follower.poll() is None  # still following: the session runs
    asyncio.run(feed(b"2\n"))
    _read_pty(out_fd, b"a\nb\nc\n", buf=seen)
    assert follower.wait(scaled(10)) == 0  # it stops by itself once the session has ended
    assert bytes(seen) + follower.stdout.read() == b"a\nb\nc\n"


def test_signal_and_delete(manager: SessionManager, session_home: str) -> None:
    sid = create(session_home, "--", "sleep", "300")
    assert run_cli(session_home, "signal", sid, "bogus").returncode == 1
    assert run_cli(session_home, "signal", "0", "TERM").returncode == 0
    wait_until(lambda: manager.get(sid).status == "exited", message="exit")
    assert manager.get(sid).meta.signal == "SIGTERM"
    result = run_cli(session_home, "signal", sid, "kill")
    assert result.returncode == 1 and "exited" in result.stderr

    other = create(session_home, "--", "sh", "-c", "sleep 300 & sleep 300")
    pgid = manager.get(other).meta.pid
    result = run_cli(session_home, "delete", other, sid)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["deleted", other, "deleted", sid]
    assert not group_alive(pgid)
    assert manager.list() == []


def test_selectors(manager: SessionManager, session_home: str) -> None:
    for sid in ("web-1", "web-2", "db"):
        create(session_home, "--id", sid, "--", "sleep", "300")
    result = run_cli(session_home, "logs", "web")
    assert result.returncode == 1
    assert "ambiguous" in result.stderr and "web-1" in result.stderr and "web-2" in result.stderr
    result = run_cli(session_home, "logs", "nothing")
    assert result.returncode == 1 and "no session matches 'nothing'" in result.stderr
    result = run_cli(session_home, "delete", "0", "d")  # both are db
    assert result.stdout.split() == ["deleted", "db"]
    result = run_cli(session_home, "delete", "0")  # now web-2 is the newest
    assert result.stdout.split() == ["deleted", "web-2"]
    assert [i.id for i in manager.list()] == ["web-1"]


# --------------------------------------------------------------------------- attach


def _read_pty(fd: int, needle: bytes, timeout: float = 10.0, buf: bytearray | None = None) -> bytes:
    buf = buf if buf is not None else bytearray()
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {needle!r} on the terminal; got {bytes(buf)!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                raise AssertionError(f"terminal closed before {needle!r}; got {bytes(buf)!r}")
            buf += data
    return bytes(buf)


def _attach_on_pty(session_home: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [*CLI, "attach", *args], stdin=slave, stdout=slave, stderr=slave,
        env=session_env(session_home), cwd=str(REPO), start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    return proc, master


def test_attach_in_a_pty_types_and_detaches_with_ctrl_b_d(
    manager: SessionManager, session_home: str
) -> None:
    sid = create(session_home, "--tty", "--", "sh")
    proc, master = _attach_on_pty(session_home, sid)
    try:
        buf = bytearray()
        os.write(master, b"echo typed-$((40+2))\r")
        _read_pty(master, b"typed-42", buf=buf)
        os.write(master, b"\x02d")
        _read_pty(master, b"[detached from session", buf=buf)
        assert proc.wait(scaled(10)) == 0
    finally:
        os.close(master)
    assert manager.get(sid).status == "running"
    assert b"typed-42" in manager.read_log(sid).data

    # Attach again and let the session end under us: attach returns its exit code.
    proc, master = _attach_on_pty(session_home, "0")
    try:
        buf = bytearray()
        _read_pty(master, b"typed-42", buf=buf)  # the replayed tail of the log
        os.write(master, b"exit 4\r")
        _read_pty(master, b"exited with code 4", buf=buf)
        assert proc.wait(scaled(10)) == 4
    finally:
        os.close(master)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_attach_in_tmux_detaches_with_ctrl_backslash(
    manager: SessionManager, session_home: str, tmp_path
) -> None:
    sid = create(session_home, "--tty", "--", "sh")
    socket_name = f"cxs{os.getpid()}"
    tmux = ["tmux", "-L", socket_name, "-f", "/dev/null"]
    env = session_env(session_home)
    command = " ".join(CLI) + f" attach {sid}; echo ATTACH-RC=$?; exec sleep 300"
    subprocess.run([*tmux, "new-session", "-d", "-x", "100", "-y", "30", "-c", str(REPO),
                    command], env=env, check=True)  # fmt: skip

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True,
                              text=True, env=env).stdout  # fmt: skip

    try:
        wait_until(lambda: manager.get(sid).output_bytes > 0, message="the prompt")
        subprocess.run([*tmux, "send-keys", "echo hello-$((6*7))", "Enter"], env=env, check=True)
        wait_until(lambda: "hello-42" in screen().split("echo hello")[-1], message="command output")
        # The pane is 100 columns wide: the session's PTY was resized to it.
        subprocess.run([*tmux, "send-keys", "stty size", "Enter"], env=env, check=True)
        wait_until(lambda: "30 100" in screen(), message="the session's window size")
        subprocess.run([*tmux, "send-keys", "C-\\"], env=env, check=True)
        wait_until(lambda: "ATTACH-RC=0" in screen(), message="detach")
        assert "[detached from session" in screen()
    finally:
        subprocess.run([*tmux, "kill-server"], env=env, capture_output=True)
    assert manager.get(sid).status == "running"
    log = manager.read_log(sid).data
    assert b"hello-42" in log and b"30 100" in log
