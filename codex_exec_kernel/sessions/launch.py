"""Starting a session: reserve its id, start its supervisor detached, wait until it runs.

The supervisor is started with :func:`spawn.spawn` (posix_spawn: no fork of a
possibly huge kernel), in a new session, and forks once more itself; so the
process we wait for exits within milliseconds and the supervisor is nobody's
child. Its spawn spec (including the child's full environment) goes over a pipe,
never to disk; its one-line answer on stdout says whether the child started.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import sys
import time
from collections.abc import Mapping

from ..envpolicy import resolve
from ..protocol import SpawnSpec
from ..spawn import SpawnError, spawn
from .config import SessionConfig
from .errors import SessionError
from .files import remove_entry
from .store import SessionMeta, SessionStore, now_iso
from .supervisor import LaunchSpec

SUPERVISOR_MODULE = "codex_exec_kernel.sessions.supervisor"


class LaunchError(SpawnError):
    """The session could not be started (spawn failed, supervisor died); nothing is left.

    A :class:`SpawnError`, so the protocol answers it as a failed spawn (``-32603``)."""


def _package_root() -> str:
    """The directory holding ``codex_exec_kernel``, so ``-m`` works from any cwd."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def supervisor_environment(base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    root = _package_root()
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    return env


def create_session(
    store: SessionStore,
    config: SessionConfig,
    spec: SpawnSpec,
    *,
    session_id: str | None = None,
    base_env: Mapping[str, str] | None = None,
    default_cwd: str | None = None,
    display: str | None = None,
) -> SessionMeta:
    """Create and start a session; returns its meta once the child runs.

    Raises :class:`InvalidSessionId`/:class:`SessionExists` before touching anything,
    and :class:`LaunchError` (directory removed again) when the child cannot start.
    """
    if not spec.argv:
        raise ValueError("argv must be a non-empty list of strings")
    env, cwd = resolve(spec, base_env, default_cwd)
    if session_id is not None:
        store.paths(session_id)  # validates before anything is created
    created_at = now_iso()
    argv, tty, size = list(spec.argv), spec.tty, spec.size
    with store.open_root(create=True) as root:
        assert root is not None
        sid = store.reserve_at(root, session_id)
        # From here on creation is all-or-nothing: any failure removes the directory,
        # through the root fd we already hold (so even fd exhaustion cannot leave a ghost).
        try:
            with store.open_session(sid) as dir_fd:
                store.write_meta(
                    SessionMeta(id=sid, argv=argv, cwd=cwd, tty=tty, created_at=created_at,
                                size=size, display=display),
                    dir_fd,
                )  # fmt: skip
            launch = LaunchSpec(
                session_id=sid, home=store.home, argv=argv, cwd=cwd, env=env, tty=tty, size=size,
                created_at=created_at, arg0=spec.arg0, attach_tail_bytes=config.attach_tail_bytes,
                exit_linger=config.exit_linger, client_drain_timeout=config.client_drain_timeout,
                kill_grace=config.delete_grace, display=display,
                screen_scrollback_lines=config.screen_scrollback_lines,
            )  # fmt: skip
            answer = _start_supervisor(launch, config.start_timeout)
        except BaseException as exc:
            _undo(root, sid, store.paths(sid).dir, exc)
            if isinstance(exc, OSError):
                reason = exc.strerror or str(exc)
                raise LaunchError(f"could not create session {sid}: {reason}") from None
            raise
    meta = store.read_meta(sid)
    if meta is None or meta.pid != answer.get("pid"):
        raise LaunchError(f"session {sid} started but its meta.json is unreadable")
    return meta


def _undo(root: int, sid: str, shown: str, cause: BaseException) -> None:
    """Remove a half-created session; if even that fails, say both things in one error."""
    try:
        remove_entry(root, sid, shown)
    except (OSError, SessionError) as exc:
        raise LaunchError(f"could not create session {sid} ({cause}), and {exc}") from None


def _start_supervisor(spec: LaunchSpec, timeout: float) -> dict[str, object]:
    child = spawn(
        [sys.executable, "-m", SUPERVISOR_MODULE],
        env=supervisor_environment(os.environ),
        cwd="/",
        tty=False,
        pipe_stdin=True,
    )
    assert child.stdin_fd is not None and child.stdout_fd is not None
    assert child.stderr_fd is not None
    try:
        fd, child.stdin_fd = child.stdin_fd, None
        os.set_blocking(fd, True)
        try:
            view = memoryview(json.dumps(spec.to_json()).encode())
            while view:
                view = view[os.write(fd, view) :]
        except BrokenPipeError:
            pass  # it died early: its stderr says why
        finally:
            os.close(fd)
        out, err = _read_answer(child.stdout_fd, child.stderr_fd, timeout)
    finally:
        for fd in (child.stdin_fd, child.stdout_fd, child.stderr_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        _reap(child.pid)
    line = out.split(b"\n", 1)[0]
    try:
        answer = json.loads(line) if line else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        detail = err.decode(errors="replace").strip()[-2000:] or "no answer"
        raise LaunchError(f"session supervisor failed to start: {detail}")
    if "error" in answer:
        raise LaunchError(str(answer["error"]))
    return answer


def _read_answer(out_fd: int, err_fd: int, timeout: float) -> tuple[bytes, bytes]:
    """Read the supervisor's stdout until its first line (or EOF), and stderr alongside."""
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    bufs = {out_fd: out, err_fd: err}
    with selectors.DefaultSelector() as sel:
        for fd in bufs:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LaunchError(f"session supervisor did not answer within {timeout:g} s")
            for key, _ in sel.select(remaining):
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fd)
                    continue
                bufs[key.fd] += data
                if key.fd == out_fd and b"\n" in out:
                    return bytes(out), bytes(err)
    return bytes(out), bytes(err)


def _reap(pid: int) -> None:
    """Collect the intermediate process (it exits right after forking the supervisor)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
