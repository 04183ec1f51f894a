"""``CodexExecKernel``: the IPython kernel plus a process table served over comms.

Everything the Python kernel does keeps working; on top, comm target ``codex.exec``
speaks the protocol of ``docs/protocol.md``. The table and its plumbing are an
:class:`~codex_exec_kernel.service.ExecService` (own I/O thread, so a busy cell never
freezes a terminal; control-channel routing for clients without subshells; the
table ends with the kernel; SIGINT wakes awaiting cells).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from ipykernel.ipkernel import IPythonKernel
from traitlets import Bool

from ._version import __version__
from .history import switch_to_memory
from .service import ExecService
from .shellroute import ShellRoute
from .transports.comm import TARGET


class CodexExecKernel(IPythonKernel):
    """An IPython kernel that also holds a table of PTY and pipe processes."""

    # `implementation` stays ipykernel's ("ipython", IPython's version): clients and
    # test suites read it as "IPython semantics here" (magics, `?`, completions), which
    # stays true. Our identity is in the banner and in `codex_exec` (see kernel_info).
    banner = f"Python 3 with a process table (codex-exec {__version__}): try %exec --help"

    load_magics = Bool(True, config=True, help="Load the %exec magics at start.")
    shell_channel_comms = Bool(
        True, config=True,
        help="Serve codex.exec comm messages that arrive on the shell channel on ipykernel's "
        "shell-channel thread (no subshell hop, no busy/idle status per message; see "
        "codex_exec_kernel.shellroute). False: ipykernel's own routing.",
    )  # fmt: skip
    executor_history_in_memory = Bool(
        True, config=True,
        help="If the first stored execution comes from a client that does not allow stdin "
        "(nbclient, papermill, nbconvert --execute), keep IPython's history in memory, as "
        "those tools do for python3 (see codex_exec_kernel.history).",
    )  # fmt: skip

    @property
    def kernel_info(self) -> dict[str, Any]:
        """ipykernel's reply plus ``codex_exec: {version, commTarget}`` (extra keys are
        allowed by the messaging spec; clients that do not know them ignore them)."""
        return {**super().kernel_info,
                "codex_exec": {"version": __version__, "commTarget": TARGET}}  # fmt: skip

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._history_decided = False
        self.exec_service = ExecService.attach(self)
        self._shell_route = ShellRoute(self, self.exec_service)
        if self.load_magics and self.shell is not None:
            self.shell.extension_manager.load_extension("codex_exec_kernel")

    async def shell_channel_thread_main(self, msg: Any) -> None:
        """``codex.exec`` comm messages are served here, on the shell-channel thread,
        without a subshell hop or busy/idle status (shellroute.py says why)."""
        if not (self.shell_channel_comms and self._shell_route.take(msg)):
            await super().shell_channel_thread_main(msg)

    async def do_execute(self, code: str, silent: bool, store_history: bool = True,
                         user_expressions: Any = None, allow_stdin: bool = False,
                         **kwargs: Any) -> Any:  # fmt: skip
        if store_history and not silent and not self._history_decided:
            self._history_decided = True
            if not allow_stdin and self.executor_history_in_memory and self.shell is not None:
                switch_to_memory(self.shell.history_manager)
        return await super().do_execute(code, silent, store_history, user_expressions,
                                        allow_stdin, **kwargs)  # fmt: skip


def _terminate_handler(kernel: CodexExecKernel) -> Any:
    def handler(signum: int, frame: Any) -> None:
        kernel.exec_service.table.kill_all_now()
        os._exit(128 + signum)

    return handler


def install_sigterm_handler(kernel: CodexExecKernel) -> None:
    """A SIGTERM runs no Python hook by default; ours ends the table's groups at once.

    The watchdog would do it too (within its grace); this is simply faster. Python lets
    only the main thread set handlers: a kernel started on another thread (as ipykernel
    allows, e.g. embedded in an application) keeps the default and relies on the watchdog.
    """
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _terminate_handler(kernel))
