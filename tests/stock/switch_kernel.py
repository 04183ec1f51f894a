"""pytest plugin for running Jupyter's own kernel test suites against another kernel.

ipykernel's tests start their kernels with ``jupyter_client.manager.start_new_kernel``
and ``run_kernel`` under the default name ``python3``; this plugin makes that default
``$CODEX_EXEC_SWITCH_KERNEL`` (e.g. ``codex-exec``) without editing a line of them, and
sets ``kernel_name`` of jupyter_kernel_test's ``KernelTests`` classes to it.
Loaded with ``-p switch_kernel`` by tests/test_stock_suites.py.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from jupyter_client import manager


def _with_kernel_name(function: Any, name: str) -> Any:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("kernel_name", name)
        return function(*args, **kwargs)

    return wrapper


def pytest_configure(config: Any) -> None:
    name = os.environ.get("CODEX_EXEC_SWITCH_KERNEL")
    if name:
        manager.start_new_kernel = _with_kernel_name(manager.start_new_kernel, name)
        manager.run_kernel = _with_kernel_name(manager.run_kernel, name)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """jupyter_kernel_test's ``KernelTests`` name their kernel in a class attribute."""
    name = os.environ.get("CODEX_EXEC_SWITCH_KERNEL")
    if not name:
        return
    try:
        from jupyter_kernel_test import KernelTests
    except ImportError:
        return
    for item in items:
        cls = getattr(item, "cls", None)
        if cls is not None and issubclass(cls, KernelTests):
            cls.kernel_name = name
