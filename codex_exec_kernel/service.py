"""``ExecService``: what makes any ipykernel kernel a codex-exec server.

It owns the I/O thread (process table + dispatcher), the orphan watchdog, the comm
target ``codex.exec`` and the control-channel routing of its comm messages. The
``codex-exec`` kernel creates one at start; ``%load_ext codex_exec_kernel`` creates
one inside a stock ``python3`` kernel, so magics, the Kernel Terminal and the client
work there too. One service per kernel, kept on the kernel object (no globals).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from typing import Any

from traitlets import Float, Int
from traitlets.config import Config, Configurable

from .iopubgate import IOPubGate
from .iothread import IOThread
from .kernelenv import KernelEnvironment
from .transports.comm import TARGET, CommConnection

log = logging.getLogger("codex_exec_kernel")

MiB = 1024 * 1024
_ATTR = "_codex_exec_service"


class ExecService(Configurable):
    """The process table of one kernel and the plumbing that exposes it."""

    watchdog_grace = Float(
        1.0, config=True, help="Seconds the orphan watchdog waits between SIGTERM and SIGKILL."
    )
    # Kernel-side defaults of the table: browser clients go through jupyter_server,
    # which drops IOPub traffic past ~1000 messages/s, so a flood must make few large
    # messages (≤ ~50/s) while an idle keystroke echo still goes out at once.
    coalesce_window = Float(0.02, config=True, help="ProcessTable.coalesce_window in kernels.")
    coalesce_max_bytes = Int(
        2 * MiB, config=True, help="ProcessTable.coalesce_max_bytes in kernels."
    )
    # At least flow_control_window + coalesce_max_bytes (+ one read): what a flow-controlled
    # client may not have received when its connection drops stays retained, so it can
    # refill every byte after a reconnect (`codex-exec connect`, the panel).
    retained_bytes = Int(8 * MiB, config=True, help="ProcessTable.retained_bytes in kernels.")
    iopub_high_water = Int(
        16 * MiB,
        config=True,
        help="Bytes of comm messages handed to IOPub and not yet sent (a subscriber stopped "
        "reading); past it the processes the comms follow pause until it halves.",
    )
    iopub_max_messages = Int(
        256,
        config=True,
        help="Comm messages handed to IOPub and not yet sent; more wait in order.",
    )

    def __init__(self, kernel: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel = kernel
        self.io = IOThread(
            config=self._table_config(),
            server_name="codex-exec kernel",
            watchdog_grace=self.watchdog_grace,
        )
        # The kernel's environment and current directory for every process it starts
        # (kernelenv.py); the table's default_cwd stays None so the directory follows %cd.
        self.kernel_env = KernelEnvironment(parent=self)
        self.io.table.spawn_hook = self.kernel_env
        self.io.start()
        self._session = kernel.session.clone() if kernel.session is not None else None
        if self._session is not None:
            # Own counter for the I/O thread's messages; ids stay distinct from the kernel's.
            self._session.message_count = 1 << 40
        #: Our open comms by id (the shell-channel route looks them up; shellroute.py).
        self._conns: dict[str, CommConnection] = {}
        kernel.comm_manager.register_target(TARGET, self._open_comm)
        for msg_type in ("comm_open", "comm_msg", "comm_close"):
            kernel.control_handlers[msg_type] = self._control_comm_handler(msg_type)
        self._stopped = False
        self._wakeup: tuple[asyncio.AbstractEventLoop, socket.socket, socket.socket] | None = None
        iopub_thread = getattr(kernel, "iopub_thread", None)
        self._gate: IOPubGate | None = None
        if callable(getattr(iopub_thread, "schedule", None)):
            self._gate = IOPubGate(
                iopub_thread, self.io.call, self._iopub_congested,
                high_water=self.iopub_high_water, max_messages=self.iopub_max_messages,
            )  # fmt: skip

    @classmethod
    def of(cls, kernel: Any) -> ExecService | None:
        return getattr(kernel, _ATTR, None)

    @classmethod
    def attach(cls, kernel: Any, **kwargs: Any) -> ExecService:
        """The kernel's service, created on first use."""
        service = cls.of(kernel)
        if service is None:
            service = cls(kernel, parent=kernel, **kwargs)
            setattr(kernel, _ATTR, service)
            service._end_with_kernel()
            service._install_wakeup_fd()
        return service

    def _end_with_kernel(self) -> None:
        """Shutdown and restart of the kernel end every process in the table."""
        original = self.kernel.do_shutdown

        def do_shutdown(restart: bool) -> Any:
            self.stop()
            return original(restart)

        self.kernel.do_shutdown = do_shutdown

    def _install_wakeup_fd(self) -> None:
        """Let SIGINT wake the kernel's main loop at once, so awaiting code (an
        ``await asyncio.sleep(30)`` cell) sees an interrupt promptly, not when its
        timer fires. Only from the main thread, and only if nobody installed one."""
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            loop = asyncio.get_event_loop()
            rsock, wsock = socket.socketpair()
            rsock.setblocking(False)
            wsock.setblocking(False)
            old = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
            if old != -1:  # someone (asyncio) already has one: keep theirs
                signal.set_wakeup_fd(old)
                rsock.close()
                wsock.close()
                return

            def drain() -> None:
                try:
                    while rsock.recv(4096):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass

            loop.add_reader(rsock.fileno(), drain)
            self._wakeup = (loop, rsock, wsock)
        except (ValueError, RuntimeError, OSError) as exc:
            log.debug("codex-exec: no wakeup fd: %s", exc)

    def _close_wakeup_fd(self) -> None:
        """Give back the wakeup fd and its socketpair (stop() may run on the control
        thread: the main loop and ``signal`` are only touched from the main thread)."""
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is None:
            return
        loop, rsock, wsock = wakeup

        def release() -> None:
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                old = signal.set_wakeup_fd(-1)
                if old != wsock.fileno():
                    signal.set_wakeup_fd(old)  # not ours any more: put it back
                loop.remove_reader(rsock.fileno())
            rsock.close()
            wsock.close()

        if threading.current_thread() is threading.main_thread():
            release()
        else:
            with contextlib.suppress(RuntimeError):  # the main loop is already closed
                loop.call_soon_threadsafe(release)

    def _table_config(self) -> Config:
        config = Config()
        config.ProcessTable.coalesce_window = self.coalesce_window
        config.ProcessTable.coalesce_max_bytes = self.coalesce_max_bytes
        config.ProcessTable.retained_bytes = self.retained_bytes
        # Explicit user config of ProcessTable wins over these kernel defaults.
        if self.config:
            config.merge(self.config)
        return config

    @property
    def table(self) -> Any:
        return self.io.table

    # ------------------------------------------------------------------ comms
    def _open_comm(self, comm: Any, msg: dict[str, Any]) -> None:
        comm_id = comm.comm_id
        conn = CommConnection(
            comm, self.io, self._publish, msg, on_closed=lambda: self._conns.pop(comm_id, None)
        )
        self._conns[comm_id] = conn
        gate, state = self._gate, conn.state
        if gate is not None and state is not None:
            self.io.call(lambda: state.set_congested(gate.congested))

    def connection(self, comm_id: Any) -> CommConnection | None:
        """The connection of our open comm ``comm_id`` (from any thread), else None."""
        conn = self._conns.get(comm_id) if isinstance(comm_id, str) else None
        if conn is not None and comm_id not in self.kernel.comm_manager.comms:
            # Closed from the kernel's side (no comm_close came in): forget it now.
            self._conns.pop(comm_id, None)
            return None
        return conn

    def _iopub_congested(self, congested: bool) -> None:
        """On the I/O thread: IOPub holds too much; every comm's processes wait."""
        for state in list(self.io.dispatcher.connections):
            state.set_congested(congested)

    def _publish(
        self, comm: Any, data: dict[str, Any], buffers: list[bytes], parent: dict[str, Any]
    ) -> None:
        """Send a comm message on IOPub from the I/O thread (see transports.comm)."""
        session, iopub = self._session, self.kernel.iopub_socket
        if session is None or iopub is None:
            return
        content = {"comm_id": comm.comm_id, "data": data}

        def send() -> None:
            session.send(iopub, "comm_msg", content, parent=parent, ident=comm.topic,
                         buffers=buffers or None)  # fmt: skip

        if self._gate is None:
            send()
        else:  # the JSON part is small: bytes travel as buffers on a comm
            self._gate.send(send, sum(len(b) for b in buffers) + 512)

    def _control_comm_handler(self, msg_type: str) -> Any:
        """Serve ``codex.exec`` comm traffic on the control channel too.

        Control is served while a cell runs, so a client without subshells still
        gets a terminal that a busy cell cannot freeze. Other comms stay on shell.
        """
        manager = self.kernel.comm_manager
        manager_handler = getattr(manager, msg_type)

        def handler(stream: Any, ident: Any, msg: dict[str, Any]) -> None:
            content = msg.get("content", {})
            if msg_type == "comm_open":
                ours = content.get("target_name") == TARGET
            else:
                comm = manager.get_comm(content.get("comm_id"))
                ours = comm is not None and getattr(comm, "target_name", None) == TARGET
            if ours:
                manager_handler(stream, ident, msg)
            else:
                log.warning("codex-exec: control channel carries only %s comms", TARGET)

        return handler

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        """End every process in the table (whole process groups), then the thread."""
        if self._stopped:
            return
        self._stopped = True
        self.io.stop()  # ends the table, then the watchdog
        self._close_wakeup_fd()
        self.kernel_env.close()
