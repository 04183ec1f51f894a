"""Helpers of the session security / fault tests: the installed CLI, a throwaway user,
a small tmpfs as a full disk, and planting hand-made (bad) session directories."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from commands import CODEX_EXEC
from sessions_helpers import REPO, session_env
from waiting import scaled


def codex_exec(
    home: str,
    *args: str,
    timeout: float = 60.0,
    stdin: int | None = subprocess.DEVNULL,
    preexec_fn: Callable[[], None] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``codex-exec session ARGS`` in its own process group (a bad signal cannot hit us)."""
    return subprocess.run(
        [CODEX_EXEC, "session", *args], env=env or session_env(home), cwd=str(REPO),
        capture_output=True, text=True, timeout=scaled(timeout), stdin=stdin,
        start_new_session=True, preexec_fn=preexec_fn,
    )  # fmt: skip


def codex_exec_as(
    user: pwd.struct_passwd, home: str, *args: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """The same console script run by another user. Our interpreter lives under /root
    (unreadable to them), so the script runs on the system's python3.11 with the venv's
    site-packages, which that user can read."""
    system_python = shutil.which("python3.11", path="/usr/bin:/usr/local/bin")
    if system_python is None:
        pytest.skip("no system python3.11 that another user can run")
    env = session_env(home)
    site = [p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *site])
    env["HOME"] = "/nonexistent"
    return subprocess.run(
        [system_python, CODEX_EXEC, "session", *args], env=env, cwd="/", capture_output=True,
        text=True, timeout=scaled(timeout), stdin=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=as_user(user),
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A failed command: non-zero exit, one line on stderr, no traceback."""
    err = result.stderr
    assert result.returncode not in (0, None) and result.returncode > 0, (result.returncode, err)
    assert "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 1), (result.returncode, result.stderr)
    if result.returncode:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def write_session(home: str, sid: str, files: dict[str, bytes | str | Any]) -> Path:
    """A hand-made session directory (0700) with the given files (0600); dicts become JSON."""
    root = Path(home, "sessions")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    d = root / sid
    d.mkdir(mode=0o700)
    for name, content in files.items():
        if isinstance(content, (dict, list)) or not isinstance(content, (bytes, str)):
            content = json.dumps(content)
        data = content.encode() if isinstance(content, str) else content
        fd = os.open(d / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return d


def good_meta(sid: str, **overrides: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": sid, "argv": ["sleep", "1"], "cwd": "/", "tty": False, "pid": None,
        "supervisorPid": None, "startTicks": None, "createdAt": "2026-01-01T00:00:00.000000Z",
        "endedAt": "2026-01-01T00:00:01.000000Z", "exitCode": 0, "signal": None,
        "status": "exited", "size": {"rows": 24, "cols": 80}, "display": "sleep 1",
    }  # fmt: skip
    meta.update(overrides)
    return meta


@contextlib.contextmanager
def throwaway_user() -> Iterator[pwd.struct_passwd]:
    """An unprivileged user made for this test and removed after it (root only)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a throwaway user")
    name = f"cxe{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def as_user(user: pwd.struct_passwd) -> Callable[[], None]:
    def drop() -> None:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return drop


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path``: a disk that fills up (root only; else skip)."""
    path.mkdir(mode=0o700, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(path)], capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
