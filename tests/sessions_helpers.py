"""Helpers of the background-session tests: polling, process checks, CLI runner, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from pathlib import Path

from commands import CODEX_EXEC
from waiting import pid_alive, scaled, wait_until

from codex_exec_kernel.pgroup import group_alive
from codex_exec_kernel.sessions import wire
from codex_exec_kernel.sessions.api import SessionManager
from codex_exec_kernel.sessions.client import AttachClient
from codex_exec_kernel.sessions.config import SessionConfig
from codex_exec_kernel.sessions.store import SessionError, SessionStore

REPO = Path(__file__).resolve().parent.parent
#: `codex-exec session` as installed in the venv, as the README writes it.
CLI = [CODEX_EXEC, "session"]


def session_env(home: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CODEX_EXEC_HOME"] = home
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_cli(home: str, *args: str, timeout: float = 30.0,
            input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=session_env(home), cwd=str(REPO), capture_output=True, text=True,
        timeout=scaled(timeout), input=input.decode() if input is not None else None,
    )


def supervisors_of(home: str) -> list[int]:
    """Live supervisor processes started for ``home`` (found by their environment)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            if b"codex_exec_kernel.sessions.supervisor" not in cmdline:
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if f"CODEX_EXEC_HOME={home}".encode() in environ and pid_alive(pid):
            found.append(pid)
    return found


def cleanup_home(home: str) -> list[str]:
    """Delete every session of ``home``; returns descriptions of anything that had leaked."""
    store = SessionStore(home)
    manager = SessionManager(SessionConfig(home=home, delete_grace=0.5))
    groups = []
    for sid in store.ids():
        meta = store.read_meta(sid)
        if meta is not None and meta.pid is not None:
            groups.append(meta.pid)
        with contextlib.suppress(SessionError, OSError):
            manager.delete(sid, 0.5)
    leaks = []
    for pgid in groups:
        if group_alive(pgid):
            leaks.append(f"process group {pgid}")
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not supervisors_of(home), 5.0)
    for pid in supervisors_of(home):
        leaks.append(f"supervisor {pid}")
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return leaks


async def read_until(client: AttachClient, needle: bytes, timeout: float = 10.0,
                     seen: bytearray | None = None) -> bytes:
    """Collect a client's output until ``needle`` appears (or fail at the deadline)."""
    buf = seen if seen is not None else bytearray()
    events = client.events()

    async def pump() -> None:
        async for event in events:
            if isinstance(event, wire.Output):
                buf.extend(event.data)
                if needle in buf:
                    return
            elif isinstance(event, wire.Exit):
                raise AssertionError(f"session exited before {needle!r}; got {bytes(buf)!r}")
        raise AssertionError(f"output ended before {needle!r}; got {bytes(buf)!r}")

    try:
        await asyncio.wait_for(pump(), scaled(timeout))
    except asyncio.TimeoutError:
        raise AssertionError(f"no {needle!r} within {timeout}s; got {bytes(buf)!r}") from None
    return bytes(buf)
