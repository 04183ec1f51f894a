"""What the session store trusts on disk: directories we own, files we open without following.

A session store is as sensitive as a shell (tmux and ssh-agent refuse sockets and
directories they do not own): whoever can write into it can plant a symlink that
makes our supervisor write through it, or a forged ``meta.json`` that makes a
delete signal a process group of their choosing. So every directory of the store
is opened with ``O_NOFOLLOW | O_DIRECTORY`` and checked on the open fd (``fstat``:
no race with a rename): it must be owned by our effective uid and not writable by
group or others. Files are then opened *relative to that checked fd*, again with
``O_NOFOLLOW``, so nothing another user does to the path afterwards can redirect us.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from .errors import UnsafeStore

OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def dir_problem(st: os.stat_result) -> str | None:
    """Why a directory with this (l)stat must not be trusted, or None when it may be."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    me = os.geteuid()
    if st.st_uid != me:
        return f"is owned by uid {st.st_uid}, not by you (uid {me})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def check_dir_stat(st: os.stat_result, path: str) -> None:
    """Refuse a directory that is not ours or that others may write into (with a fix)."""
    problem = dir_problem(st)
    if problem is None:
        return
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
        fix = f"fix it with: chmod go-w {path}"
    elif stat.S_ISLNK(st.st_mode):
        fix = "point CODEX_EXEC_HOME at the real directory instead"
    else:
        fix = "use a directory of your own (set CODEX_EXEC_HOME) or move it away"
    raise UnsafeStore(f"refusing {path}: it {problem}; {fix}")


def open_dir(path: str, *, dir_fd: int | None = None, shown: str | None = None) -> int:
    """An fd of the directory ``path`` (relative to ``dir_fd``), checked; never a symlink.

    Raises FileNotFoundError when it does not exist, :class:`UnsafeStore` when it
    is a symlink, not a directory, not ours or writable by others.
    """
    shown = shown or path
    try:
        fd = os.open(path, OPEN_DIR, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a symlink, or not a directory
            check_dir_stat(os.stat(path, dir_fd=dir_fd, follow_symlinks=False), shown)
        raise
    try:
        check_dir_stat(os.fstat(fd), shown)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_dir(path: str, *, dir_fd: int | None = None, shown: str | None = None) -> int:
    """Like :func:`open_dir`, creating the directory (0700) first when it is missing."""
    try:
        os.mkdir(path, 0o700, dir_fd=dir_fd)
    except FileExistsError:
        pass
    return open_dir(path, dir_fd=dir_fd, shown=shown)


def ensure_home(home: str) -> int:
    """The checked fd of ``home``, creating it and its parents when missing."""
    parent = os.path.dirname(home)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
    return ensure_dir(home)


@contextlib.contextmanager
def closing_fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def open_file(name: str, flags: int, dir_fd: int, mode: int = 0o600) -> int:
    """``openat(dir_fd, name)`` that never follows a symlink (ELOOP instead)."""
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)


def describe_open_error(exc: OSError, what: str) -> str:
    """A short reason for a failed open of a store file."""
    if exc.errno == errno.ELOOP:
        return f"{what} is a symlink"
    if exc.errno == errno.ENOENT:
        return f"{what} is missing"
    return f"{what}: {exc.strerror or exc}"
