"""The process table: every process of one server (a kernel or ``codex-exec serve``).

Processes belong to the table, not to a connection: any connection may list, read,
write or signal any of them. The table runs on one asyncio loop with no thread per
process; every limit is a trait so deployments tune it with ordinary Jupyter config
(``c.ProcessTable.retained_bytes = ...``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from traitlets import Float, Int
from traitlets.config import Configurable

from .backend import LocalBackend, ProcessBackend
from .envpolicy import resolve
from .pgroup import group_alive
from .process import EntryInfo, ManagedProcess
from .protocol import LIMIT_REACHED, ProtocolError, SpawnSpec, invalid_request
from .spawn import spawn
from .threads import LoopOwner

KiB = 1024
MiB = 1024 * KiB


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
        process_id = process_id or self.new_id()
        self._check_room(process_id)
        env, cwd = resolve(spec, self.base_env, self.default_cwd)
        child = spawn(
            spec.argv,
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
        info = EntryInfo(argv=list(spec.argv), cwd=cwd, tty=spec.tty, title=title)
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
        proc.cancel_removal()
        pgid = proc.backend.pid
        if pgid in self._groups and not group_alive(pgid):
            self._groups.discard(pgid)
            for hook in self.on_group_gone:
                hook(pgid)

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
