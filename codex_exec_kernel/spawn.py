"""Starting children: a PTY or pipes, each child leading its own session.

Why not ``fork()``: a kernel often holds gigabytes, and ``fork`` copies its page
tables (ptyprocess falls from ~290 to ~13 spawns/s with a 2 GB parent). glibc's
``posix_spawn`` uses ``clone(CLONE_VM|CLONE_VFORK)``, whose cost does not grow with
the parent. Python's ``os.posix_spawn`` lacks a ``chdir`` action, so we call libc's
directly through ctypes, with:

- ``POSIX_SPAWN_SETSID`` so the child leads a new session (its own process group,
  which is what signals and terminate address);
- for a PTY, an ``open()`` of the slave's path as fd 0 *after* ``setsid``: a session
  leader without a controlling terminal that opens a tty acquires it, which is what
  util-linux ``setsid --ctty`` does with ``TIOCSCTTY``. Job control and Ctrl-C work;
- every catchable signal reset to its default (Python ignores SIGPIPE; ``yes | head``
  must behave as in a terminal) and an empty signal mask.

The program is resolved with the *child's* ``PATH`` and ``cwd`` (not the server's),
and ``arg0`` is honoured. On a libc without these functions we fall back to
``subprocess`` (pipes) and a fork with ``TIOCSCTTY`` (PTY).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import signal
import stat
import struct
import subprocess
import termios
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class SpawnError(Exception):
    """A child could not be started; the message says why.

    This is the OS layer: it knows nothing of the protocol. The dispatcher answers it
    as ``-32603`` (see ``dispatcher.py``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class SpawnedChild:
    """The parent's side of a started child. The fds are non-blocking and close-on-exec."""

    pid: int
    pty_fd: int | None = None
    stdin_fd: int | None = None
    stdout_fd: int | None = None
    stderr_fd: int | None = None


# --------------------------------------------------------------------------- program lookup


def resolve_program(program: str, env: Mapping[str, str], cwd: str) -> str:
    """Find ``program`` as ``execvp`` in the child would: via the child's PATH and cwd."""
    if "/" in program:
        path = program if os.path.isabs(program) else os.path.join(cwd, program)
        _check_executable(path, program)
        return path
    search = env.get("PATH", os.defpath)
    denied = None
    for directory in search.split(os.pathsep):
        candidate = os.path.join(directory or cwd, program)
        if not os.path.isabs(candidate):
            candidate = os.path.join(cwd, candidate)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = candidate
    if denied:
        raise SpawnError(f"permission denied: {denied} is not executable")
    raise SpawnError(f"no such file or directory: {program!r} not found on PATH={search!r}")


def _check_executable(path: str, shown: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SpawnError(f"no such file or directory: {shown}") from None
    except OSError as exc:
        raise SpawnError(f"cannot run {shown}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SpawnError(f"permission denied: {shown} is a directory")
    if not os.access(path, os.X_OK):
        raise SpawnError(f"permission denied: {shown} is not executable")


def check_cwd(cwd: str) -> None:
    try:
        st = os.stat(cwd)
    except FileNotFoundError:
        raise SpawnError(f"cwd does not exist: {cwd}") from None
    except OSError as exc:
        raise SpawnError(f"cwd {cwd}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SpawnError(f"cwd is not a directory: {cwd}")
    if not os.access(cwd, os.X_OK):
        raise SpawnError(f"permission denied: cannot enter cwd {cwd}")


# --------------------------------------------------------------------------- libc posix_spawn

_POSIX_SPAWN_SETSIGDEF = 0x04
_POSIX_SPAWN_SETSIGMASK = 0x08
_POSIX_SPAWN_SETSID = 0x80
_BUF = 1024  # generous: posix_spawnattr_t is 336 bytes and file_actions 80 on x86_64 glibc


class _Libc:
    """ctypes bindings of the glibc spawn API, or ``None`` where it is missing."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        needed = (
            "posix_spawn", "posix_spawn_file_actions_init", "posix_spawn_file_actions_destroy",
            "posix_spawn_file_actions_addopen", "posix_spawn_file_actions_adddup2",
            "posix_spawn_file_actions_addchdir_np", "posix_spawnattr_init",
            "posix_spawnattr_destroy", "posix_spawnattr_setflags",
            "posix_spawnattr_setsigdefault", "posix_spawnattr_setsigmask",
            "sigemptyset", "sigaddset",
        )  # fmt: skip
        for name in needed:
            getattr(libc, name)  # raises AttributeError when absent
        self.libc = libc
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        libc.posix_spawn.argtypes = [
            ctypes.POINTER(ctypes.c_int), cp, vp, vp,
            ctypes.POINTER(cp), ctypes.POINTER(cp),
        ]  # fmt: skip
        libc.posix_spawn_file_actions_addopen.argtypes = [
            vp,
            ctypes.c_int,
            cp,
            ctypes.c_int,
            ctypes.c_uint,
        ]
        libc.posix_spawn_file_actions_adddup2.argtypes = [vp, ctypes.c_int, ctypes.c_int]
        libc.posix_spawn_file_actions_addchdir_np.argtypes = [vp, cp]
        libc.posix_spawnattr_setflags.argtypes = [vp, ctypes.c_short]
        libc.sigaddset.argtypes = [vp, ctypes.c_int]
        # The attribute object is the same for every spawn: build it once.
        self.attr = ctypes.create_string_buffer(_BUF)
        self.sigdef = ctypes.create_string_buffer(_BUF)
        self.sigmask = ctypes.create_string_buffer(_BUF)
        libc.posix_spawnattr_init(self.attr)
        libc.sigemptyset(self.sigmask)
        libc.sigemptyset(self.sigdef)
        for signum in range(1, signal.NSIG if signal.NSIG < 32 else 32):
            if signum not in (signal.SIGKILL, signal.SIGSTOP):
                libc.sigaddset(self.sigdef, signum)
        libc.posix_spawnattr_setsigdefault(self.attr, self.sigdef)
        libc.posix_spawnattr_setsigmask(self.attr, self.sigmask)
        libc.posix_spawnattr_setflags(
            self.attr, _POSIX_SPAWN_SETSID | _POSIX_SPAWN_SETSIGDEF | _POSIX_SPAWN_SETSIGMASK
        )

    def spawn(
        self,
        path: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        opens: Sequence[tuple[int, str, int]],
        dups: Sequence[tuple[int, int]],
    ) -> int:
        libc = self.libc
        actions = ctypes.create_string_buffer(_BUF)
        libc.posix_spawn_file_actions_init(actions)
        try:
            libc.posix_spawn_file_actions_addchdir_np(actions, os.fsencode(cwd))
            for fd, file, flags in opens:
                libc.posix_spawn_file_actions_addopen(actions, fd, os.fsencode(file), flags, 0)
            for src, dst in dups:
                libc.posix_spawn_file_actions_adddup2(actions, src, dst)
            c_argv = (ctypes.c_char_p * (len(argv) + 1))(*[os.fsencode(a) for a in argv], None)
            env_items = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
            c_env = (ctypes.c_char_p * (len(env_items) + 1))(*env_items, None)
            pid = ctypes.c_int(0)
            rc = libc.posix_spawn(
                ctypes.byref(pid), os.fsencode(path), actions, self.attr, c_argv, c_env
            )
        finally:
            libc.posix_spawn_file_actions_destroy(actions)
        if rc != 0:
            raise _spawn_error(rc, path, cwd)
        return pid.value


def _spawn_error(err: int, path: str, cwd: str) -> SpawnError:
    if err == errno.ENOENT:
        return SpawnError(f"no such file or directory: {path} (cwd {cwd})")
    if err == errno.EACCES:
        return SpawnError(f"permission denied: {path}")
    if err == errno.ENOEXEC:
        return SpawnError(f"exec format error: {path} is not a program (no #! line?)")
    return SpawnError(f"spawn of {path} failed: {os.strerror(err)}")


try:
    _LIBC: _Libc | None = _Libc()
except (AttributeError, OSError):  # pragma: no cover - non-glibc platforms
    _LIBC = None


# --------------------------------------------------------------------------- public API


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _nonblocking(fd: int) -> int:
    os.set_blocking(fd, False)
    return fd


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    tty: bool,
    pipe_stdin: bool = False,
    arg0: str | None = None,
    size: tuple[int, int] = (24, 80),
) -> SpawnedChild:
    """Start ``argv`` in its own session, in a PTY or with pipes.

    Raises :class:`SpawnError` with a readable reason; on error nothing is left open.
    """
    check_cwd(cwd)
    path = resolve_program(argv[0], env, cwd)
    child_argv = [arg0 if arg0 is not None else argv[0], *argv[1:]]
    if tty:
        return _spawn_pty(path, child_argv, env, cwd, size)
    return _spawn_pipes(path, child_argv, env, cwd, pipe_stdin)


def _spawn_pty(
    path: str, argv: Sequence[str], env: Mapping[str, str], cwd: str, size: tuple[int, int]
) -> SpawnedChild:
    try:
        master, slave = os.openpty()
    except OSError as exc:
        raise SpawnError(f"cannot open a terminal for {path}: {exc.strerror or exc}") from None
    try:
        set_winsize(master, *size)
        if _LIBC is not None:
            slave_name = os.ttyname(slave)
            pid = _LIBC.spawn(path, argv, env, cwd, [(0, slave_name, os.O_RDWR)], [(0, 1), (0, 2)])
        else:  # pragma: no cover
            pid = _fork_pty(path, argv, env, cwd, slave)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return SpawnedChild(pid=pid, pty_fd=_nonblocking(master))


def _spawn_pipes(
    path: str, argv: Sequence[str], env: Mapping[str, str], cwd: str, pipe_stdin: bool
) -> SpawnedChild:
    parent_ends: list[int] = []  # stdout and stderr read ends, then stdin's write end
    child_ends: list[int] = []  # the matching ends the child gets as fds 1, 2 (and 0)
    try:
        # Inside the try: when fds run out half way, the pipes made so far are closed.
        for _ in range(2):
            r, w = os.pipe()
            parent_ends.append(r)
            child_ends.append(w)
        if pipe_stdin:
            r, w = os.pipe()
            parent_ends.append(w)
            child_ends.append(r)
        dups = list(zip(child_ends, (1, 2, 0)[: len(child_ends)], strict=True))
        if _LIBC is not None:
            opens = [] if pipe_stdin else [(0, os.devnull, os.O_RDONLY)]
            pid = _LIBC.spawn(path, argv, env, cwd, opens, dups)
        else:  # pragma: no cover
            proc = subprocess.Popen(
                argv, executable=path, env=dict(env), cwd=cwd, start_new_session=True,
                stdin=child_ends[2] if pipe_stdin else subprocess.DEVNULL,
                stdout=child_ends[0], stderr=child_ends[1],
            )  # fmt: skip
            pid = proc.pid
            proc.returncode = 0  # we reap it ourselves; keep Popen.__del__ quiet
    except BaseException as exc:
        for fd in parent_ends:
            os.close(fd)
        if isinstance(exc, OSError):  # e.g. EMFILE: say so as a failed spawn
            raise SpawnError(f"cannot start {path}: {exc.strerror or exc}") from None
        raise
    finally:
        for fd in child_ends:
            os.close(fd)
    return SpawnedChild(
        pid=pid,
        stdout_fd=_nonblocking(parent_ends[0]),
        stderr_fd=_nonblocking(parent_ends[1]),
        stdin_fd=_nonblocking(parent_ends[2]) if pipe_stdin else None,
    )


def _fork_pty(  # pragma: no cover - only without glibc's posix_spawn
    path: str, argv: Sequence[str], env: Mapping[str, str], cwd: str, slave: int
) -> int:
    def child_setup() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        argv, executable=path, env=dict(env), cwd=cwd, start_new_session=True,
        stdin=slave, stdout=slave, stderr=slave, preexec_fn=child_setup,
    )  # fmt: skip
    proc.returncode = 0
    return proc.pid


def decode_wait_status(status: int) -> tuple[int, str | None]:
    """``(exitCode, signal name)`` from a wait status; 128+n for a signal, as shells do."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"SIG{signum}"
        return 128 + signum, name
    return os.waitstatus_to_exitcode(status), None
