"""In JupyterLab: %exec --tty renders like a terminal, %sessions is never typeset, the
Kernel Terminal runs in the kernel's environment, starts in the launcher's directory
and shows pipe output without a staircase."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import new_notebook

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
PROGRESS = f"{sys.executable} {HERE.parent / 'progress_bar.py'}"


def run_cell(lab, panel_id: str, code: str, wait_done: bool = True) -> None:
    lab.page.evaluate(
        """async ([id, code]) => {
            const panel = window.__kt.widget(id);
            const nb = panel.content;
            nb.activeCellIndex = nb.widgets.length - 1;
            if (nb.activeCell.model.sharedModel.getSource()) {
              await window.jupyterapp.commands.execute('notebook:insert-cell-below');
            }
            nb.activeCell.model.sharedModel.setSource(code);
            window.__cellDone = false;
            window.jupyterapp.commands.execute('notebook:run-cell')
              .then(() => { window.__cellDone = true; });
        }""",
        [panel_id, code],
    )
    if wait_done:
        lab.page.wait_for_function("() => window.__cellDone === true", timeout=120000)


def last_output(lab, panel_id: str) -> dict:
    return lab.page.evaluate(
        """(id) => {
            const nb = window.__kt.widget(id).content;
            const cell = nb.widgets[nb.widgets.length - 1];
            const area = cell.outputArea.node;
            return {text: area.innerText, html: area.innerHTML,
                    typeset: area.querySelectorAll('mjx-container, .MathJax').length,
                    outputs: cell.model.outputs.toJSON()};
        }""",
        panel_id,
    )


def test_tty_progress_bar_renders_in_place(lab) -> None:
    nb = new_notebook(lab)
    run_cell(lab, nb["id"], f"%exec --tty {PROGRESS} 40 0.1", wait_done=False)
    # while it runs: one bar line, moving
    lab.page.wait_for_function(
        """(id) => { const nb = window.__kt.widget(id).content;
                     const t = nb.widgets[nb.widgets.length - 1].outputArea.node.innerText;
                     return /\\s[1-9]\\d?%/.test(t); }""",
        arg=nb["id"], timeout=60000, polling=50,
    )  # fmt: skip
    running = last_output(lab, nb["id"])
    assert running["text"].count("%") == 1 and "Saved" not in running["text"]
    lab.page.wait_for_function("() => window.__cellDone === true", timeout=120000)
    done = last_output(lab, nb["id"])
    lines = [x for x in done["text"].splitlines() if x.strip()]
    assert lines[0] == "Collecting example-package" and lines[-1].startswith("Saved")
    assert len(lines) == 3 and "100%" in lines[1]
    (output,) = done["outputs"]  # what the notebook saves
    saved = output["data"]["text/plain"]
    assert "\r" not in saved and "\x1b[2K" not in saved and "\x1b[?25" not in saved
    assert 'style="color' in done["html"] or "ansi-" in done["html"]  # colours shown


def test_sessions_table_is_never_typeset(lab) -> None:
    nb = new_notebook(lab)
    # a positive control: this kernel's HTML output with $…$ IS typeset
    run_cell(lab, nb["id"], "from IPython.display import HTML\nHTML('<p>$x^2$ and $y$</p>')")
    lab.page.wait_for_function(
        """(id) => { const nb = window.__kt.widget(id).content;
                     const cell = nb.widgets[nb.widgets.length - 1];
                     return cell.outputArea.node.querySelectorAll('mjx-container').length > 0; }""",
        arg=nb["id"], timeout=60000,
    )  # fmt: skip
    cmd = "bash -c 'for i in $(seq 1 600); do :; done; sleep 30; echo $HOME'"
    run_cell(lab, nb["id"], f"%exec --bg --id mathy {cmd}")
    run_cell(lab, nb["id"], "%sessions")
    out = last_output(lab, nb["id"])
    assert out["typeset"] == 0
    assert "for i in $(seq 1 600); do :; done; sleep 30; echo $HOME" in out["text"]
    assert "ago)" in out["text"] and "/bin/bash -c" not in out["text"]
    # the sidebar shows the command as typed too
    lab.execute("codex-exec:show-processes", {"kernelId": nb["kernelId"]})
    row = lab.page.locator(".jp-KernelProcesses-row[data-session-id='mathy']")
    row.wait_for(timeout=20000)
    assert row.inner_text().startswith(cmd) or cmd in row.inner_text()
    assert "/bin/bash -c" not in row.inner_text()
    run_cell(lab, nb["id"], "%sessions --delete mathy")


def test_kernel_terminal_from_the_launcher(lab, lab_server) -> None:
    """The launcher's directory, and the kernel's environment after /etc/profile."""
    sub = Path(lab_server.root) / "proj" / "sub dir"
    sub.mkdir(parents=True, exist_ok=True)
    lab.execute("filebrowser:go-to-path", {"path": "proj/sub dir"})
    lab.execute("launcher:create")
    before = lab.page.evaluate("() => window.__kt.terminals().map(w => w.id)")
    lab.page.locator(".jp-LauncherCard:visible", has_text="Kernel Terminal").first.click()
    wid = lab.page.wait_for_function(
        """(before) => { const t = window.__kt.terminals().filter(w => !before.includes(w.id));
                         return t.length ? t[0].id : null; }""",
        arg=before, timeout=60000,
    ).json_value()  # fmt: skip
    lab.page.evaluate("(id) => window.__kt.widget(id).ready", wid)
    lab.wait_prompt(wid)
    text = lab.run(wid, "pwd; python -c \"import sys; print('PREFIX=' + sys.prefix)\"; echo END",
                   "END")  # fmt: skip
    assert str(sub) in text
    assert f"PREFIX={sys.prefix}" in text


def test_pipe_output_shows_without_a_staircase(lab) -> None:
    nb = new_notebook(lab)
    run_cell(lab, nb["id"], "%exec --bg --no-tty --id stairs printf 'one\\ntwo\\nthree\\n'")
    wid = lab.open_terminal({"sessionId": "stairs"})
    lab.wait_for_text(wid, "three")
    lines = [x for x in lab.lines(wid) if x.strip() in ("one", "two", "three")]
    assert lines == ["one", "two", "three"]  # each at the start of its line
    run_cell(lab, nb["id"], "%sessions --delete stairs")


def test_kernel_env_is_first_on_path_in_cells(lab) -> None:
    nb = new_notebook(lab)
    run_cell(lab, nb["id"], "%exec which python")
    out = last_output(lab, nb["id"])
    assert out["text"].strip() == os.path.join(os.path.dirname(sys.executable), "python")
