"""Bad state on disk never breaks the other sessions; faults lose nothing that can be kept.

Corrupt ``meta.json`` files, a deleted attach socket, a full disk (a small tmpfs),
fd exhaustion during ``create`` and bad arguments, all through the installed CLI.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from sessions_adversary import (
    CODEX_EXEC,
    assert_no_traceback,
    assert_one_line_error,
    codex_exec,
    codex_exec_as,
    good_meta,
    small_tmpfs,
    throwaway_user,
    write_session,
)
from sessions_helpers import cleanup_home, session_env
from waiting import pid_alive, wait_until

from codex_exec_kernel.magics.sessions import SessionTable
from codex_exec_kernel.protocol import SpawnSpec
from codex_exec_kernel.sessions.api import SessionManager
from codex_exec_kernel.sessions.config import SessionConfig

pytest_plugins = ["sessions_fixtures"]

BAD_METAS = {
    "list": "[]",
    "number": "5",
    "size-number": '{"size": 5}',
    "empty": "",
    "garbage": "\x00\xffnot json{",
    "pid-zero": json.dumps(good_meta("pid-zero", pid=0)),
    "argv-string": json.dumps(good_meta("argv-string", argv="sleep 1")),
    "wrong-id": json.dumps(good_meta("somebody-else")),
}


def listed(home: str) -> dict[str, dict]:
    result = codex_exec(home, "list", "--json")
    assert result.returncode == 0, result.stderr
    return {s["id"]: s for s in json.loads(result.stdout)["sessions"]}


@pytest.mark.parametrize("kind", sorted(BAD_METAS))
def test_corrupt_meta_is_listed_and_deletable_and_spares_the_others(
    manager: SessionManager, session_home: str, kind: str
) -> None:
    good_spec = SpawnSpec(["sh", "-c", "echo good; exec sleep 300"])
    good = manager.create(good_spec, session_id="good").id
    wait_until(lambda: manager.read_log(good).data == b"good\n", message="output")
    old = write_session(session_home, "old-bad", {"meta.json": BAD_METAS[kind]})
    os.utime(old, (1, 1))  # older than STARTING_GRACE: not "being created"
    write_session(session_home, kind, {"meta.json": BAD_METAS[kind], "output.log": b"kept\n"})
    os.utime(Path(session_home, "sessions", kind), (1, 1))
    sessions = listed(session_home)
    assert sessions[good]["status"] == "running"
    assert sessions[kind]["status"] == "corrupt" and sessions[kind]["problem"], sessions[kind]
    table = codex_exec(session_home, "list")
    assert table.returncode == 0 and f"delete it with: codex-exec session delete {kind}" in (
        table.stdout
    )
    # the others still work, whatever their index or prefix
    logs = codex_exec(session_home, "logs", good)
    assert logs.returncode == 0 and logs.stdout == "good\n", logs.stderr
    assert codex_exec(session_home, "logs", kind).stdout == "kept\n"
    assert attach_and_detach(session_home, good) == b"good\n"
    assert_one_line_error(codex_exec(session_home, "attach", kind), "corrupt")
    table = SessionTable(manager.list())  # what %sessions shows
    assert re.search(rf"\b{re.escape(kind)}\s+-\s+corrupt\s", repr(table)), repr(table)
    assert f"<td>{kind}</td><td></td><td>corrupt</td>" in table._repr_html_()
    deleted = codex_exec(session_home, "delete", kind, "old-bad")
    assert deleted.returncode == 0, deleted.stderr
    assert set(listed(session_home)) == {good}
    assert manager.get(good).status == "running"


def attach_and_detach(home: str, selector: str) -> bytes:
    """``attach SEL --from-offset 0`` with a pipe as stdin: read the replay, then EOF
    on stdin detaches (exit status 0)."""
    proc = subprocess.Popen(
        [CODEX_EXEC, "session", "attach", selector, "--from-offset", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=session_env(home), start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = proc.stdout.readline()
        proc.stdin.close()
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return line


def test_garbage_meta_does_not_hide_a_running_session(
    manager: SessionManager, session_home: str
) -> None:
    info = manager.create(SpawnSpec(["sleep", "300"]), session_id="hidden")
    Path(manager.store.paths("hidden").meta).write_bytes(b"")
    entry = listed(session_home)["hidden"]
    assert entry["status"] == "corrupt" and "still running" in entry["problem"]
    result = codex_exec(session_home, "delete", "hidden", "--grace", "0.5")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: not pid_alive(info.meta.pid), message="child ended")
    wait_until(lambda: not pid_alive(info.meta.supervisor_pid), message="supervisor ended")


def test_deleted_attach_socket_is_reported(manager: SessionManager, session_home: str) -> None:
    info = manager.create(SpawnSpec(["sleep", "300"]), session_id="nosock")
    os.unlink(manager.store.paths("nosock").sock)
    attach = codex_exec(session_home, "attach", "nosock", timeout=30)
    assert attach.returncode == 1
    assert "attach socket" in attach.stderr and "missing" in attach.stderr, attach.stderr
    assert_one_line_error(codex_exec(session_home, "signal", "nosock", "term"), "missing")
    # delete still ends it: the supervisor's pid is proven by its recorded start time
    result = codex_exec(session_home, "delete", "nosock", "--grace", "0.5")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: not pid_alive(info.meta.pid), message="child ended")
    wait_until(lambda: not pid_alive(info.meta.supervisor_pid), message="supervisor ended")


def test_signal_out_of_range_is_one_line(manager: SessionManager, session_home: str) -> None:
    manager.create(SpawnSpec(["sleep", "300"]), session_id="sig")
    for name in ("99999", "0", "SIGNOPE"):
        assert_one_line_error(codex_exec(session_home, "signal", "sig", name), "signal")
    assert manager.get("sig").status == "running"


def test_permission_error_is_one_line(tmp_path: Path) -> None:
    with throwaway_user() as user:
        base = Path(tempfile.mkdtemp(prefix="cxe-perm-", dir="/tmp"))
        try:
            base.chmod(0o755)
            locked = base / "root-only"
            locked.mkdir(mode=0o700)
            for args in (["list"], ["create", "--", "true"], ["logs", "0"]):
                result = codex_exec_as(user, str(locked / "home"), *args)
                assert_one_line_error(result, "ermission denied")
        finally:
            shutil.rmtree(base)


def _fd_limit(n: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return apply


def test_create_is_all_or_nothing_under_fd_exhaustion(session_home: str) -> None:
    created = []
    for n in range(5, 27):
        result = codex_exec(session_home, "create", "--id", f"fd{n}", "--", "true",
                            preexec_fn=_fd_limit(n))  # fmt: skip
        if result.returncode == 0:
            created.append(f"fd{n}")
        else:
            assert_one_line_error(result)
    root = Path(session_home, "sessions")
    left = sorted(p.name for p in root.iterdir()) if root.exists() else []
    assert left == sorted(created)
    assert created, "no limit was high enough to create a session"


def test_full_disk_keeps_the_exit_and_says_the_log_is_truncated(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        home = str(disk / "home")
        trigger = tmp_path / "go"
        script = (f"head -c 3000000 /dev/zero; while [ ! -e {trigger} ]; do sleep 0.02; done; "
                  "echo after; exit 7")  # fmt: skip
        manager = SessionManager(SessionConfig(home=home, exit_linger=0.3, delete_grace=0.5))
        try:
            sid = manager.create(SpawnSpec(["sh", "-c", script]), session_id="full").id
            wait_until(lambda: manager.get(sid).dropped_bytes > 0, 30, message="output dropped")
            assert shutil.disk_usage(disk).free < 64 * 1024
            trigger.touch()
            wait_until(lambda: manager.get(sid).status == "exited", 30, message="exit recorded")
            info = manager.get(sid)
            assert (info.meta.exit_code, info.log_note) == (7, "log truncated (disk full)")
            on_disk = json.loads(Path(manager.store.paths(sid).meta).read_text())
            assert on_disk["endedAt"] is None  # meta.json could not be rewritten: the record has it
            entry = listed(home)[sid]
            assert (entry["status"], entry["exitCode"]) == ("exited", 7)
            assert "log truncated (disk full)" in codex_exec(home, "list").stdout
            logs = codex_exec(home, "logs", sid, "--tail", "1")
            assert logs.returncode == 0 and "log truncated (disk full)" in logs.stderr
            assert "log truncated (disk full)" in SessionTable(manager.list())._repr_html_()
            replay = codex_exec(home, "attach", sid, timeout=30)
            assert replay.returncode == 7 and "exited with code 7" in replay.stderr, replay.stderr
            # space comes back: still exited with 7, never "lost"
            os.truncate(manager.store.paths(sid).log, 0)
            assert manager.get(sid).status == "exited" and manager.get(sid).meta.exit_code == 7
        finally:
            leaks = cleanup_home(home)
        assert not leaks


def test_full_disk_at_create_leaves_nothing(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        home = disk / "home"
        (home / "sessions").mkdir(parents=True, mode=0o700)
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with pytest.raises(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        result = codex_exec(str(home), "create", "--id", "nospace", "--", "sleep", "300")
        assert_one_line_error(result)
        assert list((home / "sessions").iterdir()) == []
        leaks = cleanup_home(str(home))
        assert not leaks


def test_a_killed_supervisor_is_reported_as_lost(
    manager: SessionManager, session_home: str
) -> None:
    info = manager.create(SpawnSpec(["sleep", "300"]), session_id="killed")
    os.kill(info.meta.supervisor_pid, signal.SIGKILL)
    wait_until(lambda: manager.get("killed").status == "lost", message="lost")
    attach = codex_exec(session_home, "attach", "killed", timeout=30)
    assert attach.returncode == 1 and "lost" in attach.stderr, attach.stderr
    assert_no_traceback(codex_exec(session_home, "delete", "killed", "--grace", "0.3"))
    wait_until(lambda: not pid_alive(info.meta.pid), message="child ended")


def test_attach_with_a_file_or_dev_null_as_stdin(
    manager: SessionManager, session_home: str, tmp_path: Path
) -> None:
    """A non-pollable stdin used to fail with 'Operation not permitted' (epoll refuses
    regular files): now it is forwarded to its end, then the attach detaches."""
    manager.create(SpawnSpec(["cat"]), session_id="cat")
    attach = codex_exec(session_home, "attach", "cat")  # stdin is /dev/null
    assert attach.returncode == 0 and "detached" in attach.stderr, attach.stderr
    typed = tmp_path / "typed"
    typed.write_text("from a file\n")
    with open(typed, "rb") as f:
        attach = codex_exec(session_home, "attach", "cat", stdin=f.fileno())
    assert attach.returncode == 0, attach.stderr
    wait_until(lambda: manager.read_log("cat").data == b"from a file\n", message="forwarded")
