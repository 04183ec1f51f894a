"""Another local user must not be able to act as you through the session store.

Each test sets up what an attacker could have done to a store (a symlink, a foreign
or group-writable directory, a planted tmp-file symlink, a forged "running" session
whose lock the attacker holds) and runs the installed ``codex-exec session`` CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sessions_adversary import (
    assert_one_line_error,
    codex_exec,
    codex_exec_as,
    good_meta,
    throwaway_user,
    write_session,
)
from sessions_helpers import cleanup_home
from waiting import pid_alive, wait_until

from codex_exec_kernel.protocol import SpawnSpec
from codex_exec_kernel.sessions.api import SessionManager
from codex_exec_kernel.sessions.config import SessionConfig
from codex_exec_kernel.sessions.pidproof import process_start_ticks

pytest_plugins = ["sessions_fixtures"]


def test_symlinked_home_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "home"
    link.symlink_to(real)
    result = codex_exec(str(link), "create", "--", "true")
    assert_one_line_error(result, "symlink", "CODEX_EXEC_HOME")
    assert not (real / "sessions").exists()
    assert_one_line_error(codex_exec(str(link), "list"), "symlink")


def test_symlinked_sessions_dir_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (home / "sessions").symlink_to(elsewhere)
    assert_one_line_error(codex_exec(str(home), "create", "--", "true"), "symlink")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("which", ["home", "sessions"])
def test_directory_writable_by_others_is_refused(tmp_path: Path, which: str) -> None:
    home = tmp_path / "home"
    (home / "sessions").mkdir(parents=True, mode=0o700)
    target = home if which == "home" else home / "sessions"
    target.chmod(0o777)
    err = assert_one_line_error(codex_exec(str(home), "list"), "writable by group or others")
    assert f"chmod go-w {target}" in err
    target.chmod(0o700)
    assert codex_exec(str(home), "list").returncode == 0


def test_foreign_owned_home_is_refused(tmp_path: Path) -> None:
    with throwaway_user() as user:
        home = tmp_path / "home"
        home.mkdir(mode=0o700)
        os.chown(home, user.pw_uid, user.pw_gid)
        err = assert_one_line_error(codex_exec(str(home), "create", "--", "true"), "owned by uid")
        assert str(user.pw_uid) in err
        assert not (home / "sessions").exists()


def test_other_user_cannot_reach_a_session() -> None:
    """Another user pointing CODEX_EXEC_HOME at our store gets a one-line refusal."""
    with throwaway_user() as user:
        base = Path(tempfile.mkdtemp(prefix="cxe-store-", dir="/tmp"))
        home = base / "home"
        manager = SessionManager(SessionConfig(home=str(home), delete_grace=0.5))
        try:
            base.chmod(0o755)
            sid = manager.create(SpawnSpec(["sleep", "300"]), session_id="mine").id
            home.chmod(0o755)
            for args in (["list"], ["signal", sid, "kill"], ["delete", sid]):
                result = codex_exec_as(user, str(home), *args)
                assert_one_line_error(result, "owned by uid 0")
            assert manager.get(sid).status == "running"
        finally:
            leaks = cleanup_home(str(home))
            shutil.rmtree(base)
        assert not leaks


def test_planted_tmp_symlink_is_not_written_through(
    manager: SessionManager, session_home: str, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("secret\n")
    victim.chmod(0o600)
    info = manager.create(SpawnSpec(["sh", "-c", "read x; exit 3"]), session_id="planted")
    meta_path = Path(manager.store.paths("planted").meta)
    sup = info.meta.supervisor_pid
    for pid in {sup, os.getpid()}:
        Path(f"{meta_path}.tmp.{pid}").symlink_to(victim)
    assert codex_exec(session_home, "signal", "planted", "term").returncode == 0
    wait_until(lambda: manager.get("planted").status == "exited", message="exit")
    assert victim.read_text() == "secret\n"
    assert json.loads(meta_path.read_text())["status"] == "exited"


def _victim_group() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "300"], start_new_session=True)


def _lock_holder(lock: Path) -> subprocess.Popen[str]:
    """Another process holding a session's flock, as an attacker forging "running" would."""
    code = ("import fcntl,os,sys; fd=os.open(sys.argv[1], os.O_RDWR|os.O_CREAT, 0o600); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_forged_running_session_cannot_signal_a_chosen_group(session_home: str) -> None:
    victim = _victim_group()
    d = write_session(session_home, "forged", {
        "meta.json": good_meta("forged", pid=victim.pid, supervisorPid=victim.pid,
                               endedAt=None, exitCode=None, status="running",
                               startTicks=1, supervisorStartTicks=1),
    })  # fmt: skip
    holder = _lock_holder(d / "lock")
    try:
        listed = codex_exec(session_home, "list")
        assert listed.returncode == 0 and "running" in listed.stdout
        for args in (["signal", "0", "kill"], ["delete", "0", "--grace", "0.2"]):
            result = codex_exec(session_home, *args)
            assert_one_line_error(result, "socket")
            assert pid_alive(victim.pid), args
    finally:
        holder.communicate("")
        victim.kill()
        victim.wait()


def test_pid_zero_or_one_is_never_signalled(session_home: str) -> None:
    for pid, sid in ((0, "zero"), (1, "one")):
        write_session(session_home, sid, {"meta.json": good_meta(sid, pid=pid, endedAt=None,
                                                                  exitCode=None)})  # fmt: skip
    listed = codex_exec(session_home, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    sessions = {s["id"]: s for s in json.loads(listed.stdout)["sessions"]}
    for sid in ("zero", "one"):
        assert sessions[sid]["status"] == "corrupt" and "pid" in sessions[sid]["problem"]
    result = codex_exec(session_home, "signal", "zero", "hangup")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    result = codex_exec(session_home, "delete", "zero", "one")
    assert result.returncode == 0, result.stderr  # our own group was not hung up
    assert not (Path(session_home) / "sessions" / "zero").exists()


def test_delete_of_a_lost_session_spares_a_reused_pid(session_home: str) -> None:
    """A lost session's recorded pid now belongs to somebody else (start time differs)."""
    stranger = _victim_group()
    try:
        ticks = process_start_ticks(stranger.pid)
        assert ticks is not None
        write_session(session_home, "reused", {"meta.json": good_meta(
            "reused", pid=stranger.pid, startTicks=ticks + 1, endedAt=None, exitCode=None,
            supervisorPid=stranger.pid)})  # fmt: skip
        result = codex_exec(session_home, "delete", "reused", "--grace", "0.2")
        assert result.returncode == 0, result.stderr
        assert pid_alive(stranger.pid)
    finally:
        stranger.send_signal(signal.SIGKILL)
        stranger.wait()


def test_attaching_another_users_session_says_why() -> None:
    """Root attaching a user's session used to be refused by the supervisor's peer check
    and reported as "lost"; now the store's owner check says what is wrong."""
    with throwaway_user() as user:
        base = Path(tempfile.mkdtemp(prefix="cxe-theirs-", dir="/tmp"))
        home = base / "home"
        try:
            base.chmod(0o755)
            os.chown(base, user.pw_uid, user.pw_gid)
            made = codex_exec_as(user, str(home), "create", "--id", "theirs", "--", "sleep", "300")
            assert made.returncode == 0, made.stderr
            attach = codex_exec(str(home), "attach", "theirs", timeout=30)
            err = assert_one_line_error(attach, f"owned by uid {user.pw_uid}")
            assert "lost" not in err
        finally:
            gone = codex_exec_as(user, str(home), "delete", "theirs", "--grace", "0.3")
            shutil.rmtree(base)
        assert gone.returncode == 0, gone.stderr


_FAKE_SUPERVISOR = """
import fcntl, os, socket, sys
d, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lock = os.open(d + "/lock", os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(lock, fcntl.LOCK_EX)
s = socket.socket(socket.AF_UNIX)
s.bind(d + "/sock")
os.chmod(d + "/sock", 0o666)
os.setgroups([]); os.setgid(gid); os.setuid(uid)
s.listen(8)  # SO_PEERCRED of our clients is the listener's: the other user
print("ready", flush=True)
conns = []
while True:
    conns.append(s.accept()[0])
"""


def test_a_socket_served_by_another_user_is_refused(tmp_path: Path) -> None:
    """Planted in our store (as if before these checks), another user's listener poses as
    a running session's supervisor: the client refuses it and says so; nothing is signalled."""
    with throwaway_user() as user:
        home = Path(tempfile.mkdtemp(prefix="cxe-fake-", dir="/tmp"))
        victim = _victim_group()
        fake = None
        try:
            d = write_session(str(home), "fake", {})
            fake = subprocess.Popen(
                [sys.executable, "-c", _FAKE_SUPERVISOR, str(d), str(user.pw_uid),
                 str(user.pw_gid)], stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert fake.stdout is not None and fake.stdout.readline().strip() == "ready"
            (d / "meta.json").write_text(json.dumps(good_meta(
                "fake", pid=victim.pid, supervisorPid=fake.pid, endedAt=None, exitCode=None,
                status="running", startTicks=process_start_ticks(victim.pid),
                supervisorStartTicks=process_start_ticks(fake.pid))))  # fmt: skip
            needle = f"served by uid {user.pw_uid}"
            for args in (["signal", "fake", "kill"], ["delete", "fake", "--grace", "0.2"]):
                assert_one_line_error(codex_exec(str(home), *args), needle)
            attach = codex_exec(str(home), "attach", "fake", timeout=30)
            assert attach.returncode == 1 and needle in attach.stderr, attach.stderr
            assert pid_alive(victim.pid) and fake.poll() is None
        finally:
            for proc in (victim, fake):
                if proc is not None:
                    proc.kill()
                    proc.wait()
            shutil.rmtree(home)
