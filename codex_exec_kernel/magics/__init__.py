"""The IPython extension: ``%exec``/``%%exec``, background-session magics, ``%terminal``.

``%load_ext codex_exec_kernel`` works in any IPython kernel that has the package: it
attaches a process table to that kernel (see :mod:`codex_exec_kernel.service`), so the
Kernel Terminal and the client can see what the magics start.
"""

from __future__ import annotations

from typing import Any

from .assist import install_completer, install_inspector
from .exec_magics import ExecMagics
from .result import ExecFailed, ExecResult
from .sessions import SessionMagics

__all__ = ["ExecFailed", "ExecMagics", "ExecResult", "SessionMagics", "load_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    kernel = getattr(ipython, "kernel", None)
    if kernel is not None:
        from ..service import ExecService

        service = ExecService.attach(kernel)  # table, comm target, shutdown hook: once
        ipython.configurables.append(service.kernel_env)  # `%config KernelEnvironment.x`
        install_inspector(kernel, ipython)

        def path_of() -> str:
            return service.table.child_base_env().get("PATH", "")

        install_completer(ipython, path_of)
    magics = ExecMagics(shell=ipython, parent=ipython)
    ipython.register_magics(magics)
    ipython.configurables.append(magics)  # so `%config ExecMagics.x = ...` reaches it
    ipython.register_magics(SessionMagics(shell=ipython))

