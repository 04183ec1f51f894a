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
import signal
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from traitlets import Float, Int
from traitlets.config import Configurable

from .backend import LocalBackend, ProcessBackend
from .envpolicy import child_environment
from .process import EntryInfo, ManagedProcess
from .protocol import LIMIT_REACHED, ProtocolError, SpawnSpec, invalid_request
from .spawn import group_alive, signal_group, spawn

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

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.loop = loop or asyncio.get_event_loop()
        self.processes: dict[str, ManagedProcess] = {}
        self._ids = itertools.count(1)
        #: Called with each new process group (the orphan watchdog registers them).
        self.on_group_started: list[Callable[[int], None]] = []
        self.on_group_gone: list[Callable[[int], None]] = []
        self.base_env: dict[str, str] | None = None  # None: os.environ at spawn time
        self.default_cwd: str | None = None  # None: os.getcwd() at spawn time
        #: The kernel's environment, directory and login-shell wrapper (kernelenv.py).
        self.spawn_hook: SpawnHook | None = None

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
        process_id = process_id or self.new_id()
        self._check_room(process_id)
        env = child_environment(self.child_base_env(), spec.env, spec.env_policy, spec.tty)
        cwd = spec.cwd or self.child_cwd()
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
        if self.processes.get(proc.process_id) is proc:
            del self.processes[proc.process_id]
        proc.cancel_removal()
        if isinstance(proc.backend, LocalBackend) and not group_alive(proc.backend.pid):
            for hook in self.on_group_gone:
                hook(proc.backend.pid)

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
            proc.backend.terminate(grace)
        deadline = self.loop.time() + grace + 0.5
        while any(not p.closed for p in procs) and self.loop.time() < deadline:
            waiters = [p.wait_event() for p in procs if not p.closed]
            await asyncio.wait(waiters, timeout=max(0.0, deadline - self.loop.time()))
        for proc in self.processes.values():
            if isinstance(proc.backend, LocalBackend):
                signal_group(proc.backend.pid, signal.SIGKILL)
            proc.backend.close()
            proc.cancel_removal()

    def kill_all_now(self) -> None:
        """Last resort from a signal handler or atexit: SIGKILL every group, no waiting."""
        for proc in list(self.processes.values()):
            if isinstance(proc.backend, LocalBackend):
                signal_group(proc.backend.pid, signal.SIGKILL)
