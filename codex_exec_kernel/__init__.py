"""codex-exec-kernel: a real shell wherever your Jupyter kernel runs."""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__", "load_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext codex_exec_kernel``: the %exec magics, in any IPython kernel."""
    from .magics import load_ipython_extension as load

    load(ipython)
