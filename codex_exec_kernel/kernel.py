"""``CodexExecKernel``: the IPython kernel plus a process table served over comms.

Everything the Python kernel does keeps working; on top, comm target ``codex.exec``
speaks the protocol of ``docs/protocol.md``. The table and its plumbing are an
:class:`~codex_exec_kernel.service.ExecService` (own I/O thread, so a busy cell never
freezes a terminal; control-channel routing for clients without subshells).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

from ipykernel.ipkernel import IPythonKernel
from traitlets import Bool

from ._version import __version__
from .service import ExecService


class CodexExecKernel(IPythonKernel):
    """An IPython kernel that also holds a table of PTY and pipe processes."""

    implementation = "codex-exec"
    implementation_version = __version__
    banner = f"Python 3 with a process table (codex-exec {__version__}): try %exec --help"

    load_magics = Bool(True, config=True, help="Load the %exec magics at start.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exec_service = ExecService.attach(self)
        self._install_wakeup_fd()
        if self.load_magics and self.shell is not None:
            self.shell.extension_manager.load_extension("codex_exec_kernel")

    @property
    def io(self) -> Any:
        return self.exec_service.io

    @property
    def process_table(self) -> Any:
        return self.exec_service.table

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
        self.exec_service.stop()
        return super().do_shutdown(restart)


def _terminate_handler(kernel: CodexExecKernel) -> Any:
    def handler(signum: int, frame: Any) -> None:
        kernel.exec_service.table.kill_all_now()
        os._exit(128 + signum)

    return handler


def install_sigterm_handler(kernel: CodexExecKernel) -> None:
    """A SIGTERM runs no Python hook by default; ours ends the table's groups at once.

    The watchdog would do it too (within its grace); this is simply faster.
    """
    if sys.platform != "win32":
        signal.signal(signal.SIGTERM, _terminate_handler(kernel))
