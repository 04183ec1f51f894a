"""The files of one session directory, opened only relative to its checked directory fd.

Names, the atomic ``meta.json`` write (O_EXCL tmp + fsync + rename), the lock test,
the preallocated exit record, log sizes and tails, and removal that never follows a
symlink. Kept apart from :mod:`.store` (which decides what a session *is*) so the
supervisor and readers share the exact same file handling.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import stat
from typing import Any

from .errors import SessionError
from .meta import RECORD_SIZE, ExitRecord, MetaError
from .trust import open_file

META = "meta.json"
RECORD = "record"
LOG = "output.log"
LOCK = "lock"
SOCK = "sock"
SUPERVISOR_LOG = "supervisor.log"
#: Every file a session directory may hold (for removal without listing the directory).
KNOWN_FILES = (META, RECORD, LOG, LOCK, SOCK, SUPERVISOR_LOG)


def socket_address(dir_fd: int) -> str:
    """The attach socket's AF_UNIX address through the checked directory fd.

    ``/proc/self/fd/N/sock`` is short (``sun_path`` holds ~108 bytes and homes can be
    deep) and Linux resolves it through the fd, so a renamed or swapped path on the
    way cannot redirect a bind or connect.
    """
    return f"/proc/self/fd/{dir_fd}/{SOCK}"


def write_json_at(dir_fd: int, name: str, obj: dict[str, Any]) -> None:
    """Write ``obj`` to ``name`` through an O_EXCL tmp file and a rename: readers never
    see half a file, and a planted ``<name>.tmp.*`` symlink is never written through."""
    tmp = f"{name}.tmp.{os.getpid()}.{secrets.token_hex(4)}"
    fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _lock_held_fd(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    return False


def lock_held(path: str, dir_fd: int | None = None) -> bool:
    """Whether some process holds an exclusive flock on ``path`` (i.e. a live supervisor)."""
    try:
        fd = os.open(
            path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False  # a symlink is not our lock
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        return _lock_held_fd(fd)
    finally:
        os.close(fd)  # also drops our shared lock


def create_record(dir_fd: int) -> int:
    """Create and preallocate the exit record (O_EXCL); returns its fd, kept for rewrites."""
    fd = open_file(RECORD, os.O_RDWR | os.O_CREAT | os.O_EXCL, dir_fd)
    try:
        write_record(fd, ExitRecord(), sync=True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_record(fd: int, record: ExitRecord, *, sync: bool = True) -> None:
    """Rewrite the record in place: the blocks exist already, so a full disk cannot stop it."""
    data = record.encode()
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        offset += os.pwrite(fd, view[offset:], offset)
    if sync:
        os.fsync(fd)


def read_record(dir_fd: int) -> ExitRecord | None:
    """The exit record, or None when there is none (old session) or it is unreadable."""
    try:
        fd = open_file(RECORD, os.O_RDONLY | os.O_NONBLOCK, dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return ExitRecord.decode(os.pread(fd, RECORD_SIZE * 2, 0))
    except (OSError, MetaError):
        return None
    finally:
        os.close(fd)


def tail_offset_at(fd: int, size: int, lines: int) -> int:
    # A trailing newline ends the last line; it does not start a new one.
    skip_last = size > 0 and os.pread(fd, 1, size - 1) == b"\n"
    pos = size
    count = 0
    while pos > 0:
        start = max(0, pos - 65536)
        block = os.pread(fd, pos - start, start)
        end = len(block)
        if pos == size and skip_last:
            end -= 1
        idx = end
        while True:
            idx = block.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            count += 1
            if count == lines:
                return start + idx + 1
        pos = start
    return 0


def log_size_at(dir_fd: int) -> int:
    try:
        st = os.stat(LOG, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def missing_at(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def remove_entry(root: int, name: str, shown: str) -> None:
    """Remove ``name`` from the checked ``root``: a directory tree, or one non-directory.

    ``shutil.rmtree`` with ``dir_fd`` never follows symlinks. If it fails (fd
    exhaustion), the known files are unlinked by name relative to ``root``, which
    needs no further fd, so a failed creation can always be undone.
    """
    try:
        st = os.stat(name, dir_fd=root, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=root)
        return
    try:
        shutil.rmtree(name, dir_fd=root)
        return
    except FileNotFoundError:
        return
    except OSError as exc:
        first = exc
    for known in KNOWN_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{name}/{known}", dir_fd=root)
    try:
        os.rmdir(name, dir_fd=root)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SessionError(
            f"could not remove {shown}: {first.strerror or first}; then: {exc.strerror or exc}"
        ) from None
