"""Executed notebooks keep no history on disk, as ``python3`` under nbclient/papermill;
interactive clients keep IPython's history file as before."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import nbformat
import pytest
from kernel_helpers import blocking_client, start_kernel
from nbclient import NotebookClient
from waiting import scaled

SECRET = "token-" + "5ec2e7"


@pytest.fixture
def ipython_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return tmp_path / "ipython"


def stored_cells(ipython_dir: Path) -> list[str]:
    db = ipython_dir / "profile_default" / "history.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT source_raw FROM history")]


def execute_notebook(kernel: str) -> None:
    """Run a notebook with a secret in a cell as nbclient (papermill's engine) does."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"api_key = {SECRET!r}\nprint('ran')")]
    NotebookClient(nb, kernel_name=kernel, timeout=int(scaled(60))).execute()
    assert "ran" in nb.cells[0].outputs[0]["text"]


#: python3 is the reference: nbclient starts it with --HistoryManager.hist_file=:memory:.
@pytest.mark.parametrize("kernel", ["codex-exec", "python3"])
def test_executed_notebook_leaves_no_history(ipython_dir: Path, kernel: str) -> None:
    execute_notebook(kernel)
    assert not any(SECRET in cell for cell in stored_cells(ipython_dir))


def test_interactive_client_keeps_the_history_file(ipython_dir: Path) -> None:
    """A client that allows stdin (JupyterLab, console) gets IPython's usual history."""
    km = start_kernel("codex-exec")
    try:
        kc = blocking_client(km)
        try:
            reply = kc.execute_interactive("kept = 6 * 7", timeout=scaled(60))
            assert reply["content"]["status"] == "ok"
            history = kc.history(hist_access_type="tail", n=5, reply=True,
                                 timeout=scaled(30))  # fmt: skip
            assert any("kept = 6 * 7" in entry[2] for entry in history["content"]["history"])
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel()
    assert "kept = 6 * 7" in stored_cells(ipython_dir)


def test_the_switch_can_be_turned_off(ipython_dir: Path) -> None:
    profile = ipython_dir / "profile_default"
    profile.mkdir(parents=True)
    (profile / "codex_exec_kernel_config.py").write_text(
        "c.CodexExecKernel.executor_history_in_memory = False\n"
    )
    execute_notebook("codex-exec")
    assert any(SECRET in cell for cell in stored_cells(ipython_dir))
