"""The per-session supervisor: ``python -m codex_exec_kernel.sessions.supervisor --dir D``.

One small process per session owns the child's PTY or pipes, so the child outlives
whoever started it (kernel, Jupyter server, shell). It:

* detaches: it is started in a new session by :mod:`.launch`, forks once more at
  once (the starter reaps the short-lived parent; we are re-parented to init, so no
  one has to reap us) and ignores SIGHUP;
* reads its spawn spec as JSON on stdin, starts the child with :func:`spawn.spawn`,
  answers one JSON line on stdout (``{"ok": ...}`` or ``{"error": ...}``) and then
  points its stdio at /dev/null;
* appends every output byte to ``output.log`` as it arrives: a slow or absent client
  never slows the child, and memory stays bounded whatever is written;
* serves attach clients on ``sock`` (see :mod:`.wire`): each reads the log from its
  own offset and then live, so a client is never "behind" in memory, only in the file;
* records the exit in meta.json once all output is in the log, tells attached
  clients, and exits. SIGTERM/SIGINT end the child's process group (grace, SIGKILL).

One asyncio loop does all of it; the child side reuses :class:`LocalBackend`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import struct
import sys
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any

from ..backend import LocalBackend
from ..pgroup import end_group_async, signal_group
from ..screen.feeder import ScreenFeeder, ScreenSettings
from ..spawn import SpawnError, spawn
from . import wire
from .errors import SessionError
from .files import LOCK, LOG, SOCK, SUPERVISOR_LOG, create_record, socket_address, write_record
from .meta import ExitRecord, SessionMeta, now_iso
from .pidproof import process_start_ticks
from .store import SessionStore
from .trust import open_file

CHUNK = 256 * 1024
HELLO_TIMEOUT = 10.0
#: Bytes queued for one client before we stop reading the log for it.
SEND_HIGH_WATER = 1024 * 1024
#: Stream boundaries remembered for pipe sessions (older ranges replay as stdout).
MAX_SEGMENTS = 8192


@dataclass(frozen=True)
class LaunchSpec:
    """What the starter sends on stdin: the already-resolved child and supervisor settings."""

    session_id: str
    home: str
    argv: list[str]
    cwd: str
    env: dict[str, str]
    tty: bool
    size: tuple[int, int]
    created_at: str
    arg0: str | None = None
    attach_tail_bytes: int = 64 * 1024
    exit_linger: float = 1.0
    client_drain_timeout: float = 10.0
    kill_grace: float = 2.0
    display: str | None = None
    screen_scrollback_lines: int = 2000

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.session_id, "home": self.home, "argv": self.argv, "cwd": self.cwd,
            "env": self.env, "tty": self.tty, "size": list(self.size),
            "createdAt": self.created_at, "arg0": self.arg0,
            "attachTailBytes": self.attach_tail_bytes, "exitLinger": self.exit_linger,
            "clientDrainTimeout": self.client_drain_timeout, "killGrace": self.kill_grace,
            "display": self.display, "screenScrollbackLines": self.screen_scrollback_lines,
        }  # fmt: skip

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LaunchSpec:
        return cls(
            session_id=obj["id"], home=obj["home"], argv=list(obj["argv"]), cwd=obj["cwd"],
            env=dict(obj["env"]), tty=bool(obj["tty"]), size=(obj["size"][0], obj["size"][1]),
            created_at=obj["createdAt"], arg0=obj.get("arg0"),
            attach_tail_bytes=int(obj["attachTailBytes"]),
            exit_linger=float(obj["exitLinger"]),
            client_drain_timeout=float(obj["clientDrainTimeout"]),
            kill_grace=float(obj["killGrace"]), display=obj.get("display"),
            screen_scrollback_lines=int(obj.get("screenScrollbackLines", 2000)),
        )  # fmt: skip


class _ClientConnection:
    """One attach client on a raw non-blocking socket, driven by loop readers/writers.

    Why not asyncio streams or transports: a client that sends a last keystroke and
    closes while output to it is in flight makes our next send fail (EPIPE), and an
    asyncio transport then stops reading at once, dropping that keystroke still
    queued in our receive buffer. Here a failed send only stops sending; we keep
    reading until the end of what the client sent.
    """

    def __init__(self, supervisor: Supervisor, sock: socket.socket) -> None:
        self.supervisor = supervisor
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = supervisor.loop
        self.decoder = wire.FrameDecoder()
        self.out = bytearray()
        self.pos: int | None = None  # log offset of the next byte to send; None before hello
        self.wake = asyncio.Event()
        self.writable = asyncio.Event()  # our send buffer is below its high-water mark
        self.writable.set()
        self.closed = False
        self.send_failed = False
        self.writing = False
        self.task: asyncio.Task[None] | None = None
        #: While a snapshot is being made: send the log up to here only, then the
        #: snapshot frame (its offset), so the next Output frame continues it.
        self.send_limit: int | None = None
        self.snapshot_frame: tuple[int, bytes] | None = None
        self.loop.add_reader(self.fd, self._on_readable)
        self._hello_timer = self.loop.call_later(HELLO_TIMEOUT, self.refuse, "no hello")

    # -- receiving
    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        try:
            messages = self.decoder.feed(data)
        except wire.WireError as exc:
            self.refuse(f"bad frame: {exc}")
            return
        for msg in messages:
            if self.closed:
                return
            if self.pos is None:
                if not isinstance(msg, wire.Hello):
                    self.refuse("expected hello")
                    return
                self._start(msg)
            elif isinstance(msg, wire.SnapshotRequest):
                self._request_snapshot(msg)
            else:
                self.supervisor.apply(msg)

    def _start(self, hello: wire.Hello) -> None:
        self._hello_timer.cancel()
        sup = self.supervisor
        start = hello.from_offset
        if start is None:
            start = sup.size - sup.spec.attach_tail_bytes
        self.pos = min(max(start, 0), sup.size)
        self.send(
            wire.Welcome(sup.spec.session_id, sup.backend.pid, sup.spec.tty, self.pos,
                         sup.size, sup.screen is not None).encode()
        )  # fmt: skip
        self.task = self.loop.create_task(self._feed())
        sup.client_tasks.add(self.task)
        self.task.add_done_callback(sup.client_tasks.discard)

    # -- snapshots
    def _request_snapshot(self, req: wire.SnapshotRequest) -> None:
        if self.send_limit is not None or self.pos is None:
            return  # one at a time; the pending one answers
        self.send_limit = self.supervisor.size
        task = self.loop.create_task(self._make_snapshot(req))
        self.supervisor.client_tasks.add(task)
        task.add_done_callback(self.supervisor.client_tasks.discard)

    async def _make_snapshot(self, req: wire.SnapshotRequest) -> None:
        sup = self.supervisor
        assert self.send_limit is not None
        rows = req.rows or sup.pty_size[0]
        cols = req.cols or sup.pty_size[1]
        if sup.screen is None:  # a pipe session: nothing to redraw
            mark, chunk, alt, title = self.send_limit, b"", False, ""
        else:
            mark, chunk = await sup.screen.snapshot(self.send_limit, rows, cols)
            alt, title = sup.screen.model.alt_mode is not None, sup.screen.model.title
        self.send_limit = mark
        self.snapshot_frame = (mark, wire.Snapshot(mark, rows, cols, alt, title, chunk).encode())
        self.wake.set()

    # -- sending
    def send(self, data: bytes) -> None:
        if self.send_failed or self.closed:
            return
        self.out += data
        self._flush()

    def _flush(self) -> None:
        while self.out:
            try:
                n = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # the client is gone; keep reading what it sent before
                self.send_failed = True
                self.out.clear()
                break
            del self.out[:n]
        if self.out and not self.writing:
            self.writing = True
            self.loop.add_writer(self.fd, self._flush)
        elif not self.out and self.writing:
            self.writing = False
            self.loop.remove_writer(self.fd)
        if len(self.out) >= SEND_HIGH_WATER:
            self.writable.clear()
        else:
            self.writable.set()

    async def _feed(self) -> None:
        """Send the log from our offset, then live, then Exit once we have it all."""
        sup = self.supervisor
        assert self.pos is not None
        while not self.closed and not self.send_failed:
            limit = sup.size if self.send_limit is None else min(self.send_limit, sup.size)
            if not self.writable.is_set():
                await self.writable.wait()
            elif self.pos < limit:
                stream, end = sup.stream_run(self.pos)
                end = min(end, limit)
                data = os.pread(sup.read_fd, min(CHUNK, end - self.pos), self.pos)
                if not data:  # the log is shorter than we think (truncated by hand?)
                    self.pos = sup.size
                    continue
                self.send(wire.Output(self.pos, stream, data).encode())
                self.pos += len(data)
                await asyncio.sleep(0)  # let the child's output and other clients in
            elif self.snapshot_frame is not None and self.pos >= self.snapshot_frame[0]:
                self.send(self.snapshot_frame[1])
                self.snapshot_frame = None
                self.send_limit = None
            elif sup.finished and self.send_limit is None:
                assert sup.exit is not None
                self.send(wire.Exit(*sup.exit, sup.size).encode())
                await self._drain_then_close()
                return
            else:
                self.wake.clear()
                await self.wake.wait()

    async def _drain_then_close(self) -> None:
        while self.out and not self.closed and not self.send_failed:
            self.writable.clear()
            await self.writable.wait()
            if len(self.out) == 0:
                break
        self.close()

    def refuse(self, message: str) -> None:
        self.send(wire.Error(message).encode())
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._hello_timer.cancel()
        self.loop.remove_reader(self.fd)
        if self.writing:
            self.loop.remove_writer(self.fd)
        self.sock.close()
        self.supervisor.clients.discard(self)
        self.wake.set()
        self.writable.set()


class Supervisor:
    """The running state of one session: child backend, log, clients."""

    def __init__(
        self,
        spec: LaunchSpec,
        store: SessionStore,
        meta: SessionMeta,
        backend: LocalBackend,
        files: SessionFiles,
    ) -> None:
        self.spec = spec
        self.store = store
        self.files = files
        self.meta = meta
        self.backend = backend
        self.loop = backend.loop
        self.log_fd = files.log_fd
        self.read_fd = files.read_fd
        self.size = os.fstat(self.log_fd).st_size
        #: Output that could not be logged (full disk), and why; kept in the record.
        self.dropped = 0
        self.dropped_reason: str | None = None
        self._stop_grace = spec.kill_grace
        self.default_stream = "pty" if spec.tty else "stdout"
        self._seg_starts: list[int] = []
        self._seg_streams: list[str] = []
        self._open_streams = set(backend.streams)
        self.exit: tuple[int, str | None] | None = None
        self.finished = False  # exit recorded: clients get the rest of the log, then Exit
        self._done = asyncio.Event()
        self.clients: set[_ClientConnection] = set()
        self.client_tasks: set[asyncio.Task[None]] = set()
        self._terminating = False
        self._linger: asyncio.TimerHandle | None = None
        #: The screen model of a PTY session, kept here so it outlives any kernel.
        self.pty_size = spec.size
        self.screen: ScreenFeeder | None = None
        if spec.tty:
            settings = ScreenSettings(scrollback_lines=spec.screen_scrollback_lines)
            self.screen = ScreenFeeder(self.loop, spec.size[0], spec.size[1], settings)

    # -- OutputSink
    def on_output(self, stream: str, data: bytes) -> None:
        if self.finished:
            return
        if not self.spec.tty and (not self._seg_streams or self._seg_streams[-1] != stream):
            self._seg_starts.append(self.size)
            self._seg_streams.append(stream)
            if len(self._seg_starts) > MAX_SEGMENTS:
                del self._seg_starts[: MAX_SEGMENTS // 2]
                del self._seg_streams[: MAX_SEGMENTS // 2]
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.log_fd, view)
            except OSError as exc:
                # Disk full or gone: the child must not block on us, so this output is lost;
                # the record (preallocated) says so.
                self._dropped(len(view), exc)
                break
            self.size += n
            view = view[n:]
        if self.screen is not None:
            self.screen.push(data, self.size)
        self._wake_clients()

    def _dropped(self, count: int, exc: OSError) -> None:
        first = self.dropped == 0
        self.dropped += count
        self.dropped_reason = _DROP_REASONS.get(exc.errno or 0, exc.strerror or str(exc))
        if first:
            self._write_record(sync=False)

    def _write_record(self, *, sync: bool) -> bool:
        code, sig = self.exit if self.finished and self.exit is not None else (None, None)
        record = ExitRecord(
            ended_at=self.meta.ended_at if self.finished else None, exit_code=code, signal=sig,
            dropped_bytes=self.dropped, dropped_reason=self.dropped_reason,
        )  # fmt: skip
        try:
            write_record(self.files.record_fd, record, sync=sync)
        except OSError as exc:
            _log(self.files.dir_fd, f"could not write the exit record: {exc}")
            return False
        return True

    def on_stream_eof(self, stream: str) -> None:
        self._open_streams.discard(stream)
        self._maybe_finish()

    def on_exit(self, exit_code: int, signal_name: str | None) -> None:
        self.exit = (exit_code, signal_name)
        if not self._maybe_finish():
            # A grandchild may hold the output open; record the exit after a short wait.
            self._linger = self.loop.call_later(self.spec.exit_linger, self._finish)

    # -- lifecycle
    def _maybe_finish(self) -> bool:
        if self.exit is not None and not self._open_streams:
            self._finish()
            return True
        return False

    def _finish(self) -> None:
        if self.finished or self.exit is None:
            return
        if self._linger is not None:
            self._linger.cancel()
        self.backend.pause_reading()
        self.finished = True
        code, sig = self.exit
        self.meta = replace(
            self.meta, ended_at=now_iso(), exit_code=code, signal=sig, status="exited"
        )
        # The record first: it is rewritten in place, so a full disk cannot lose the exit.
        self._write_record(sync=True)
        with contextlib.suppress(OSError):  # a full disk, or the directory being deleted
            self.store.write_meta(self.meta, self.files.dir_fd)
        self._wake_clients()
        self.loop.create_task(self._shutdown_when_drained())

    async def _shutdown_when_drained(self) -> None:
        deadline = self.loop.time() + self.spec.client_drain_timeout
        while self.client_tasks and self.loop.time() < deadline and not self._terminating:
            await asyncio.wait(set(self.client_tasks), timeout=0.1)
        if self._terminating:
            await self._kill_group_after_grace()
        self._done.set()

    def request_stop(self, grace: float | None = None) -> None:
        """SIGTERM/SIGINT/Terminate: end the child's group (grace, then SIGKILL); then exit."""
        if grace is not None:
            self._stop_grace = grace
        if self.finished:
            self._terminating = True
            return
        if not self._terminating:
            self._terminating = True
            self.backend.terminate(self._stop_grace)

    async def _kill_group_after_grace(self) -> None:
        await end_group_async(self.backend.pid, self._stop_grace, terminate=False)

    # -- clients
    def _wake_clients(self) -> None:
        for client in self.clients:
            client.wake.set()

    def stream_run(self, pos: int) -> tuple[str, int]:
        """The stream of the byte at ``pos`` and where its run ends (pipe sessions)."""
        if self.spec.tty or not self._seg_starts:
            return self.default_stream, self.size
        i = bisect.bisect_right(self._seg_starts, pos) - 1
        stream = self._seg_streams[i] if i >= 0 else self.default_stream
        end = self._seg_starts[i + 1] if i + 1 < len(self._seg_starts) else self.size
        return stream, end

    def _accept(self, server_sock: socket.socket) -> None:
        try:
            sock, _ = server_sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        sock.setblocking(False)
        client = _ClientConnection(self, sock)
        if not _same_user(sock):
            client.refuse("permission denied: not the session's user")
            return
        self.clients.add(client)

    def apply(self, msg: wire.Message) -> None:
        """A client's input or control message, applied to the child at once."""
        if isinstance(msg, wire.Input):
            self.backend.write(msg.data)
        elif isinstance(msg, wire.Resize):
            if self.spec.tty and 1 <= msg.rows <= 10_000 and 1 <= msg.cols <= 10_000:
                with contextlib.suppress(OSError):
                    self.backend.resize(msg.rows, msg.cols)
                self.pty_size = (msg.rows, msg.cols)
                if self.screen is not None:
                    self.screen.resize(msg.rows, msg.cols, self.size)
        elif isinstance(msg, wire.Signal):
            if 0 < msg.signum < signal.NSIG:
                self.backend.signal(msg.signum)
        elif isinstance(msg, wire.CloseStdin):
            self.backend.close_stdin()
        elif isinstance(msg, wire.Terminate):
            self.request_stop(msg.grace)

    async def serve(self, server_sock: socket.socket) -> None:
        self.loop.add_reader(server_sock.fileno(), self._accept, server_sock)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.request_stop)
        self.backend.start(self)
        try:
            await self._done.wait()
        finally:
            self.loop.remove_reader(server_sock.fileno())
            server_sock.close()
            with contextlib.suppress(OSError):
                os.unlink(SOCK, dir_fd=self.files.dir_fd)
            for client in list(self.clients):
                client.close()
            for task in list(self.client_tasks):
                task.cancel()
            self.backend.close()


def _same_user(sock: socket.socket | None) -> bool:
    """SO_PEERCRED: only the session's own user may attach (the 0700 dir is the first wall)."""
    if sock is None:
        return False
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


_DROP_REASONS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded"}


@dataclass
class SessionFiles:
    """The supervisor's files, all opened (O_NOFOLLOW) through its checked directory fd."""

    dir_fd: int
    lock_fd: int
    record_fd: int
    log_fd: int
    read_fd: int

    def close(self) -> None:
        for fd in (self.read_fd, self.log_fd, self.record_fd, self.lock_fd, self.dir_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def open_files(store: SessionStore, session_id: str) -> SessionFiles:
    """Take the lock and create the record and the log, each with O_EXCL where it is new."""
    opened: list[int] = []

    def keep(fd: int) -> int:
        opened.append(fd)
        return fd

    try:
        dir_fd = keep(store.open_session_fd(session_id))
        lock_fd = keep(open_file(LOCK, os.O_RDWR | os.O_CREAT, dir_fd))
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until we exit
        except BlockingIOError:
            raise SessionError(f"session {session_id} already has a supervisor") from None
        record_fd = keep(create_record(dir_fd))
        log_fd = keep(open_file(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, dir_fd))
        read_fd = keep(open_file(LOG, os.O_RDONLY, dir_fd))
    except BaseException:
        for fd in opened:
            os.close(fd)
        raise
    return SessionFiles(dir_fd, lock_fd, record_fd, log_fd, read_fd)


def _bind(dir_fd: int) -> socket.socket:
    """Listen on ``sock`` in our directory, bound through its fd (no path can redirect it)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(SOCK, dir_fd=dir_fd)  # stale, from a lost supervisor: we hold the lock now
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(socket_address(dir_fd))
        os.chmod(socket_address(dir_fd), 0o600)
        sock.listen(64)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _report(obj: dict[str, Any]) -> None:
    os.write(1, (json.dumps(obj) + "\n").encode())


def _detach_stdio() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def run(spec: LaunchSpec) -> int:
    """Start the child and supervise it; returns the supervisor's exit status."""
    store = SessionStore(spec.home)
    try:
        files = open_files(store, spec.session_id)
    except (OSError, SessionError) as exc:
        _report({"error": f"session setup failed: {exc}"})
        return 1
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        server_sock = _bind(files.dir_fd)
        child = spawn(spec.argv, env=spec.env, cwd=spec.cwd, tty=spec.tty, pipe_stdin=True,
                      arg0=spec.arg0, size=spec.size)  # fmt: skip
    except SpawnError as exc:
        _report({"error": exc.message})
        return 1
    except OSError as exc:
        _report({"error": f"session setup failed: {exc}"})
        return 1
    meta = SessionMeta(
        id=spec.session_id, argv=spec.argv, cwd=spec.cwd, tty=spec.tty,
        created_at=spec.created_at, pid=child.pid, supervisor_pid=os.getpid(),
        start_ticks=process_start_ticks(child.pid),
        supervisor_start_ticks=process_start_ticks(os.getpid()), status="running",
        size=spec.size, display=spec.display,
    )  # fmt: skip
    backend = LocalBackend(child, spec.tty, loop)
    try:
        store.write_meta(meta, files.dir_fd)
        supervisor = Supervisor(spec, store, meta, backend, files)
    except Exception as exc:  # e.g. a full disk: the creator removes the directory
        signal_group(child.pid, signal.SIGKILL)
        _report({"error": f"session setup failed: {exc}"})
        return 1
    _report({"ok": True, "pid": child.pid, "supervisorPid": os.getpid()})
    _detach_stdio()
    try:
        loop.run_until_complete(supervisor.serve(server_sock))
    except BaseException:
        _log(files.dir_fd, f"crashed:\n{traceback.format_exc()}")
        if not supervisor.finished:  # never leave the child behind unsupervised
            signal_group(child.pid, signal.SIGTERM)
            time.sleep(spec.kill_grace)
            signal_group(child.pid, signal.SIGKILL)
        return 1
    finally:
        loop.close()
    files.close()
    return 0


def _log(dir_fd: int, text: str) -> None:
    """Append to supervisor.log: our stdio is /dev/null, and failures must be findable."""
    with contextlib.suppress(OSError):
        fd = open_file(SUPERVISOR_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, dir_fd)
        with os.fdopen(fd, "a") as f:
            f.write(f"{now_iso()} supervisor {os.getpid()}: {text}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-fork", action="store_true", help="stay the starter's child")
    args = parser.parse_args(argv)
    if not args.no_fork and os.fork() > 0:
        os._exit(0)  # the starter reaps this at once; our child is re-parented to init
    os.umask(0o077)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        spec = LaunchSpec.from_json(json.loads(sys.stdin.buffer.read()))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        _report({"error": f"bad launch spec: {exc}"})
        return 2
    try:
        return run(spec)
    except Exception as exc:  # before the answer (fd exhaustion...): say so in one line
        _report({"error": f"session setup failed: {exc}"})
        return 1


if __name__ == "__main__":
    sys.exit(main())
