"""codex-exec-kernel: a real shell wherever your Jupyter kernel runs."""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .labext_paths import _jupyter_labextension_paths
from .serverext import _jupyter_server_extension_points

__all__ = [
    "__version__",
    "_jupyter_labextension_paths",
    "_jupyter_server_extension_points",
    "load_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext codex_exec_kernel``: the %exec magics, in any IPython kernel."""
    from .magics import load_ipython_extension as load

    load(ipython)
