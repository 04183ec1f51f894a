"""Where the built JupyterLab extension lives, for ``jupyter labextension develop``.

``codex_exec_kernel/__init__.py`` re-exports :func:`_jupyter_labextension_paths`
so that ``jupyter labextension develop --overwrite .`` links the build output
(``codex_exec_kernel/labextension``) into the Jupyter data dir.
"""

from __future__ import annotations

#: The npm package name, also the directory under ``share/jupyter/labextensions``.
LABEXTENSION_NAME = "codex-exec-kernel"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]
