"""The process table: every process of one server (a kernel or ``codex-exec serve``).

Processes belong to the table, not to a connection: any connection may list, read,
write or signal any of them. The table runs on one asyncio loop with no thread per
process; every limit is a trait so deployments tune it with ordinary Jupyter config
(``c.ProcessTable.retained_bytes = ...``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from traitlets import Bool, Float, Int
from traitlets.config import Configurable

from .backend import LocalBackend, ProcessBackend
from .envpolicy import resolve
from .pgroup import group_alive
from .process import EntryInfo, ManagedProcess
from .protocol import LIMIT_REACHED, ProtocolError, SpawnSpec, invalid_params, invalid_request
from .screen.feeder import ScreenFeeder, ScreenSettings
from .spawn import spawn
from .threads import LoopOwner

KiB = 1024
MiB = 1024 * KiB


class SpawnHook(Protocol):
    """What a server adds to every local spawn (a kernel's: ``kernelenv.KernelEnvironment``)."""

    def environ(self, base: Mapping[str, str]) -> dict[str, str]: ...
    def cwd(self) -> str: ...
    def command(self, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]: ...


class ProcessTable(Configurable):
    """The table of processes, with the limits and defaults of the protocol as traits."""

    retained_bytes = Int(
        1 * MiB, config=True, help="Output bytes kept per process for process/read and replay."
    )
    retention_seconds = Float(
        30.0, config=True, help="How long a closed process stays readable before it goes."
    )
    coalesce_window = Float(
        0.005, config=True, help="Seconds of output gathered into one chunk (a few ms)."
    )
    coalesce_max_bytes = Int(64 * KiB, config=True, help="Largest output chunk, in bytes.")
    flow_control_window = Int(
        4 * MiB,
        config=True,
        help="Bytes a process may run ahead of its slowest flow-controlled subscriber.",
    )
    max_processes = Int(256, config=True, help="Most processes that may run at once.")
    terminate_grace = Float(
        2.0, config=True, help="Seconds between SIGTERM and SIGKILL when the table shuts down."
    )
    max_write_bytes = Int(8 * MiB, config=True, help="Largest single process/write, in bytes.")
    write_id_memory = Int(
        4096, config=True, help="How many recent writeIds per process are remembered."
    )
    max_stdin_queue_bytes = Int(
        16 * MiB,
        config=True,
        help="Input queued for a process that is not reading it; a write past it is "
        "refused (-32010) instead of queued.",
    )
    closed_retained_bytes = Int(
        64 * MiB,
        config=True,
        help="Output kept by all closed processes together; past it the oldest closed "
        "entries lose their output first.",
    )
    max_env_globs = Int(
        256,
        config=True,
        help="Most envPolicy globs (exclude + includeOnly) in one request (-32602 past it).",
    )

    screen_model = Bool(
        True,
        config=True,
        help="Keep a terminal screen model of each PTY process (process/snapshot redraws "
        "it); off: no model and process/snapshot answers -32602 (for comparisons).",
    )
    screen_scrollback_lines = Int(
        2000, config=True, help="Lines of plain history a PTY's screen model keeps."
    )
    screen_backlog_bytes = Int(
        256 * KiB,
        config=True,
        help="Output not yet fed to a screen model past which the oldest is skipped "
        "(modes kept; the screen is rebuilt from the newest screen_rebuild_bytes).",
    )
    screen_rebuild_bytes = Int(
        32 * KiB, config=True, help="Newest output a skipping screen model is rebuilt from."
    )

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.loop = loop or asyncio.get_event_loop()
        #: Checks (in test runs) that the table and its entries stay on the loop's thread.
        self.owner = LoopOwner(self.loop, "ProcessTable")
        self.processes: dict[str, ManagedProcess] = {}
        self._ids = itertools.count(1)
        #: Called with each new process group (the orphan watchdog registers them).
        self.on_group_started: list[Callable[[int], None]] = []
        self.on_group_gone: list[Callable[[int], None]] = []
        self.base_env: dict[str, str] | None = None  # None: os.environ at spawn time
        self.default_cwd: str | None = None  # None: os.getcwd() at spawn time
        #: Process groups announced to ``on_group_started`` and not yet to ``on_group_gone``.
        self._groups: set[int] = set()
        #: Closed entries, oldest first, and the output bytes they retain together.
        self._closed: dict[str, ManagedProcess] = {}
        self.closed_bytes = 0
        #: The kernel's environment, directory and login-shell wrapper (kernelenv.py).
        self.spawn_hook: SpawnHook | None = None

    def new_screen(self, rows: int, cols: int) -> ScreenFeeder | None:
        """A screen model for a PTY entry, with this table's limits (None when off)."""
        if not self.screen_model:
            return None
        settings = ScreenSettings(
            scrollback_lines=self.screen_scrollback_lines,
            backlog_bytes=self.screen_backlog_bytes,
            rebuild_bytes=self.screen_rebuild_bytes,
        )
        return ScreenFeeder(self.loop, rows, cols, settings)

    def child_base_env(self) -> dict[str, str]:
        """The environment a child inherits when its request does not replace it."""
        base = self.base_env if self.base_env is not None else dict(os.environ)
        return self.spawn_hook.environ(base) if self.spawn_hook is not None else dict(base)

    def child_cwd(self) -> str:
        """Where a child starts when its request names no directory."""
        hook_cwd = self.spawn_hook.cwd() if self.spawn_hook is not None else None
        return self.default_cwd or hook_cwd or os.getcwd()

    # ------------------------------------------------------------------ entries
    def get(self, process_id: str) -> ManagedProcess | None:
        return self.processes.get(process_id)

    def require(self, process_id: str) -> ManagedProcess:
        proc = self.processes.get(process_id)
        if proc is None:
            raise invalid_request(f"unknown process id {process_id!r}")
        return proc

    def new_id(self) -> str:
        while True:
            candidate = f"proc-{next(self._ids)}"
            if candidate not in self.processes:
                return candidate

    def running_count(self) -> int:
        return sum(1 for p in self.processes.values() if not p.closed)

    def check_spec(self, spec: SpawnSpec) -> None:
        """Limits on what a request may ask to spawn that the wire types cannot know."""
        policy = spec.env_policy
        if policy is not None:
            count = len(policy.exclude) + len(policy.include_only)
            if count > self.max_env_globs:
                raise invalid_params(
                    f"envPolicy has {count} globs; the limit is {self.max_env_globs}"
                )

    def check_write_size(self, size: int) -> None:
        """A single write larger than ``max_write_bytes`` is refused (``-32010``)."""
        if size > self.max_write_bytes:
            raise ProtocolError(
                LIMIT_REACHED,
                f"write of {size} bytes exceeds the limit of {self.max_write_bytes}",
            )

    def _check_room(self, process_id: str) -> None:
        if process_id in self.processes:
            raise invalid_request(f"process id {process_id!r} already exists")
        if self.running_count() >= self.max_processes:
            raise ProtocolError(
                LIMIT_REACHED, f"too many processes: the limit is {self.max_processes}"
            )

    def start(
        self, spec: SpawnSpec, process_id: str | None = None, title: str | None = None
    ) -> ManagedProcess:
        """Spawn a local child and add it. A failed spawn leaves no entry behind."""
        self.owner.check()
        self.check_spec(spec)
        process_id = process_id or self.new_id()
        self._check_room(process_id)
        env, cwd = resolve(spec, self.child_base_env(), self.child_cwd())
        argv = spec.argv
        if self.spawn_hook is not None:
            argv, env = self.spawn_hook.command(list(argv), env)
        child = spawn(
            argv,
            env=env,
            cwd=cwd,
            tty=spec.tty,
            pipe_stdin=spec.pipe_stdin,
            arg0=spec.arg0,
            size=spec.size,
        )
        backend = LocalBackend(child, spec.tty, self.loop)
        self._groups.add(child.pid)
        for hook in self.on_group_started:
            hook(child.pid)
        info = EntryInfo(
            argv=list(spec.argv), cwd=cwd, tty=spec.tty, title=title, size=spec.size
        )
        return self._add(process_id, backend, info)

    def adopt(
        self,
        process_id: str,
        backend: ProcessBackend,
        *,
        argv: list[str],
        cwd: str,
        tty: bool,
        title: str | None = None,
        owner: Any = None,
    ) -> ManagedProcess:
        """Add an entry backed by any backend (e.g. an attached background session)."""
        self.owner.check()
        self._check_room(process_id)
        proc = self._add(process_id, backend, EntryInfo(argv=argv, cwd=cwd, tty=tty, title=title))
        if owner is not None:
            proc.subscribe(owner, 0)
        return proc

    def _add(self, process_id: str, backend: ProcessBackend, info: EntryInfo) -> ManagedProcess:
        proc = ManagedProcess(self, process_id, backend, info)
        self.processes[process_id] = proc
        backend.start(proc)
        return proc

    def remove(self, proc: ManagedProcess) -> None:
        self.owner.check()
        if self.processes.get(proc.process_id) is proc:
            del self.processes[proc.process_id]
        if self._closed.get(proc.process_id) is proc:
            del self._closed[proc.process_id]
            self.closed_bytes -= proc.retained_bytes
        proc.cancel_removal()
        if proc.screen is not None:
            proc.screen.close()
        pgid = proc.backend.pid
        if pgid in self._groups and not group_alive(pgid):
            self._groups.discard(pgid)
            for hook in self.on_group_gone:
                hook(pgid)

    def entry_closed(self, proc: ManagedProcess) -> None:
        """``proc`` just closed: its output now counts toward ``closed_retained_bytes``,
        and the oldest closed entries give theirs up while the total is past it."""
        self._closed[proc.process_id] = proc
        self.closed_bytes += proc.retained_bytes
        for oldest in list(self._closed.values()):
            if self.closed_bytes <= self.closed_retained_bytes:
                break
            self.closed_bytes -= oldest.evict_output()

    def list(self) -> list[dict[str, Any]]:
        return [p.describe() for p in self.processes.values()]

    def drop_subscriber(self, sub: Any) -> None:
        for proc in list(self.processes.values()):
            proc.unsubscribe(sub)

    # ------------------------------------------------------------------ shutdown
    async def shutdown(self, grace: float | None = None) -> None:
        """End every process group: SIGHUP+SIGTERM, then SIGKILL after ``grace``."""
        grace = self.terminate_grace if grace is None else grace
        procs = [p for p in self.processes.values() if not p.closed]
        for proc in procs:
            proc.terminate(grace)
        deadline = self.loop.time() + grace + 0.5
        while any(not p.closed for p in procs) and self.loop.time() < deadline:
            waiters = [p.wait_event() for p in procs if not p.closed]
            await asyncio.wait(waiters, timeout=max(0.0, deadline - self.loop.time()))
        for proc in self.processes.values():
            proc.kill_now()
            proc.backend.close()
            proc.cancel_removal()

    def kill_all_now(self) -> None:
        """Last resort from a signal handler or atexit: SIGKILL every group, no waiting."""
        for proc in list(self.processes.values()):
            proc.kill_now()
