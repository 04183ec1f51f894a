"""``CodexExecKernel``: the IPython kernel plus a process table served over comms.

Everything the Python kernel does keeps working; on top, comm target ``codex.exec``
speaks the protocol of ``docs/protocol.md``. The table lives on its own I/O thread,
so a busy cell never freezes a terminal. Clients that cannot use a subshell may send
``codex.exec`` comm messages on the control channel, which is served while a cell
runs.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

from ipykernel.ipkernel import IPythonKernel
from traitlets import Bool, Float, Int

from ._version import __version__
from .iothread import IOThread
from .transports.comm import TARGET, CommConnection
from .watchdog import Watchdog

KiB = 1024
MiB = 1024 * KiB


class CodexExecKernel(IPythonKernel):
    """An IPython kernel that also holds a table of PTY and pipe processes."""

    implementation = "codex-exec"
    implementation_version = __version__
    banner = f"Python 3 with a process table (codex-exec {__version__}): try %exec --help"

    load_magics = Bool(True, config=True, help="Load the %exec magics at start.")
    watchdog_grace = Float(
        1.0, config=True, help="Seconds the orphan watchdog waits between SIGTERM and SIGKILL."
    )
    # Kernel-side defaults of the table: browser clients go through jupyter_server,
    # which drops IOPub traffic past ~1000 messages/s, so a flood must make few large
    # messages (≤ ~50/s) while an idle keystroke echo still goes out at once.
    kernel_coalesce_window = Float(0.02, config=True, help="ProcessTable.coalesce_window here.")
    kernel_coalesce_max_bytes = Int(
        2 * MiB, config=True, help="ProcessTable.coalesce_max_bytes here."
    )
    kernel_retained_bytes = Int(4 * MiB, config=True, help="ProcessTable.retained_bytes here.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.io = IOThread(config=self._table_config(), server_name="codex-exec kernel")
        self.io.table.default_cwd = os.getcwd()
        self.watchdog = Watchdog(grace=self.watchdog_grace)
        self.io.table.on_group_started.append(self.watchdog.register)
        self.io.table.on_group_gone.append(self.watchdog.unregister)
        self.io.start()
        self._io_session = self.session.clone() if self.session is not None else None
        if self._io_session is not None:
            # Own counter for the I/O thread's messages; ids stay distinct from the kernel's.
            self._io_session.message_count = 1 << 40
        self.comm_manager.register_target(TARGET, self._open_comm)
        for msg_type in ("comm_open", "comm_msg", "comm_close"):
            self.control_handlers[msg_type] = self._control_comm_handler(msg_type)
        self._install_wakeup_fd()
        if self.load_magics and self.shell is not None:
            self.shell.extension_manager.load_extension("codex_exec_kernel")

    def _table_config(self) -> Any:
        from traitlets.config import Config

        config = Config()
        config.ProcessTable.coalesce_window = self.kernel_coalesce_window
        config.ProcessTable.coalesce_max_bytes = self.kernel_coalesce_max_bytes
        config.ProcessTable.retained_bytes = self.kernel_retained_bytes
        # Explicit user config of ProcessTable wins over the kernel's defaults.
        config.merge(self.config)
        return config

    @property
    def process_table(self) -> Any:
        return self.io.table

    # ------------------------------------------------------------------ comms
    def _open_comm(self, comm: Any, msg: dict[str, Any]) -> None:
        CommConnection(comm, self.io, self._publish_comm_msg, msg)

    def _publish_comm_msg(
        self, comm: Any, data: dict[str, Any], buffers: list[bytes], parent: dict[str, Any]
    ) -> None:
        """Send a comm message on IOPub from the I/O thread (see transports.comm)."""
        session = self._io_session
        if session is None or self.iopub_socket is None:
            return
        content = {"comm_id": comm.comm_id, "data": data}
        session.send(
            self.iopub_socket,
            "comm_msg",
            content,
            parent=parent,
            ident=comm.topic,
            buffers=buffers or None,
        )

    def _control_comm_handler(self, msg_type: str) -> Any:
        """Serve ``codex.exec`` comm traffic on the control channel too.

        Control is served while a cell runs, so a client without subshells still
        gets a terminal that a busy cell cannot freeze. Other comms stay on shell.
        """
        manager_handler = getattr(self.comm_manager, msg_type)

        def handler(stream: Any, ident: Any, msg: dict[str, Any]) -> None:
            content = msg.get("content", {})
            if msg_type == "comm_open":
                ours = content.get("target_name") == TARGET
            else:
                comm = self.comm_manager.get_comm(content.get("comm_id"))
                ours = comm is not None and getattr(comm, "target_name", None) == TARGET
            if ours:
                manager_handler(stream, ident, msg)
            else:
                self.log.warning("codex-exec: control channel carries only %s comms", TARGET)

        return handler

    # ------------------------------------------------------------------ signals
    def _install_wakeup_fd(self) -> None:
        """Let SIGINT wake the main loop at once, so awaiting code sees interrupts promptly."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        try:
            import asyncio

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
            self._wakeup_socks = (rsock, wsock)
        except (ValueError, RuntimeError, OSError) as exc:
            self.log.debug("codex-exec: no wakeup fd: %s", exc)

    # ------------------------------------------------------------------ lifecycle
    def do_shutdown(self, restart: bool) -> Any:
        """Shutdown and restart end every process in the table (whole process groups)."""
        self.io.stop()
        self.watchdog.close()
        return super().do_shutdown(restart)


def _terminate_handler(kernel: CodexExecKernel) -> Any:
    def handler(signum: int, frame: Any) -> None:
        kernel.io.table.kill_all_now()
        os._exit(128 + signum)

    return handler


def install_sigterm_handler(kernel: CodexExecKernel) -> None:
    """A SIGTERM runs no Python hook by default; ours ends the table's groups at once.

    The watchdog would do it too (within its grace); this is simply faster.
    """
    if sys.platform != "win32":
        signal.signal(signal.SIGTERM, _terminate_handler(kernel))
