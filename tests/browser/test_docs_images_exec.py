"""README screenshot of `%exec --tty pip download` in a cell (`make docs-images-exec`).

Not part of `make test`: it needs PyPI and rewrites docs/img/exec-tty-pip-download.png,
so it runs only with CODEX_EXEC_DOCS_IMAGES=1. The rendering itself is tested with a
local progress-bar producer in test_exec_native.py.
"""

from __future__ import annotations

import os

import pytest
from conftest import IMG_DIR, new_notebook
from test_exec_native import last_output, run_cell

WANTED = bool(os.environ.get("CODEX_EXEC_DOCS_IMAGES"))
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not WANTED, reason="makes a README image: make docs-images-exec"),
]


def test_pip_download_progress_bar_in_a_cell(lab, tmp_path) -> None:
    # This machine's pip config points at local wheels: the first cell sets it aside
    # (and the directory); the screenshot shows the second.
    setup = (f"import os\nos.chdir({str(tmp_path)!r})\nos.environ.pop('PIP_FIND_LINKS', None)\n"
             "os.environ['PIP_CONFIG_FILE'] = os.devnull")
    nb = new_notebook(lab, setup)
    lab.page.wait_for_function("() => window.__cellDone === true", timeout=120000)
    run_cell(lab, nb["id"], "%exec which pip\n"
             "%exec --tty pip download --no-deps --no-cache-dir pandas==2.2.3")  # fmt: skip
    out = last_output(lab, nb["id"])
    assert "Saved" in out["text"] and "13.1/13.1 MB" in out["text"], out["text"]
    IMG_DIR.mkdir(parents=True, exist_ok=True)
    lab.page.locator(f"#{nb['id']} .jp-Cell").last.screenshot(
        path=str(IMG_DIR / "exec-tty-pip-download.png"))
