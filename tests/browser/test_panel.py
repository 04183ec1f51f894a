"""The Kernel Terminal panel's user-facing features in a real JupyterLab.

The demo workspace, where it opens from, full-screen programs, copy and paste, links, the title, the
theme and font size, several panels on one process, the sidebar's actions, a
lost websocket, and a kernel that cannot load the extension. Every wait is on
a condition with a timeout.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request

import pytest
from conftest import BIN, NO_PACKAGE_KERNEL, ROOT, SHADOWED_PACKAGE_KERNEL, new_notebook
from waiting import scaled

pytestmark = pytest.mark.browser

#: Viewport coordinates of the centre of cell (``line``, ``col``) of a panel's
#: buffer (``line`` counts from the top of the scrollback).
CELL_CENTER = """([id, line, col]) => {
    const w = window.__kt.widget(id);
    const term = w.terminal;
    const cell = term._core._renderService.dimensions.css.cell;
    const screen = w.node.querySelector('.xterm-screen').getBoundingClientRect();
    const row = line - term.buffer.active.viewportY;
    return [screen.left + (col + 0.5) * cell.width, screen.top + (row + 0.5) * cell.height];
}"""


def line_index(lab, wid: str, text: str) -> int:
    """Index of the last buffer line that is exactly ``text``."""
    lines = lab.lines(wid)
    hits = [i for i, line in enumerate(lines) if line.strip() == text]
    assert hits, f"{text!r} not on screen:\n" + "\n".join(lines[-20:])
    return hits[-1]


def wait_new_terminal(lab, before: int) -> str:
    """Wait for a panel beyond the ``before`` open ones; return its id once its shell runs."""
    lab.page.wait_for_function("(n) => window.__kt.terminals().length > n", arg=before)
    wid = lab.page.evaluate("() => window.__kt.terminals().at(-1).id")
    lab.page.evaluate("(id) => window.__kt.widget(id).ready", wid)
    lab.wait_prompt(wid)
    return wid


def run_from_palette(lab, label: str) -> None:
    """Search the command palette for ``label`` and click the highlighted item.

    JupyterLab may take the focus from the (modal) palette while it finishes
    starting, which closes it; the palette also re-renders often. So each poll
    (re)opens it when closed, and the click happens in the same JS task that finds
    the item.
    """
    lab.page.wait_for_function(
        """(label) => {
            const input = document.querySelector('.lm-CommandPalette-input');
            if (!input || input.getBoundingClientRect().width === 0) {
                window.jupyterapp.commands.execute('apputils:activate-command-palette');
                return false;
            }
            if (input.value !== label) {
                input.value = label;
                input.dispatchEvent(new Event('input', {bubbles: true}));
                return false;
            }
            const item = document.querySelector('.lm-CommandPalette-item.lm-mod-active');
            if (!item || !item.textContent.includes(label)) {
                return false;
            }
            item.click();
            return true;
        }""",
        arg=label,
        polling=200,
    )


def wait_buffer(lab, wid: str, kind: str) -> None:
    """Wait until xterm shows its ``normal`` or ``alternate`` (full-screen) buffer."""
    lab.page.wait_for_function(
        "([id, kind]) => window.__kt.widget(id).terminal.buffer.active.type === kind",
        arg=[wid, kind],
    )


# ----------------------------------------------------------------------------- opening


def test_opens_from_launcher_palette_and_notebook_context_menu(lab):
    # The launcher's card.
    lab.execute("launcher:create")
    lab.page.locator(".jp-LauncherCard", has_text="Kernel Terminal").first.click()
    wid = wait_new_terminal(lab, 0)
    lab.run(wid, "echo launcher-$((1+1))", "launcher-2")
    # The command palette.
    run_from_palette(lab, "New Kernel Terminal")
    wid = wait_new_terminal(lab, 1)
    lab.run(wid, "echo palette-$((1+2))", "palette-3")
    # A notebook's context menu: a terminal on that notebook's kernel.
    nb = new_notebook(lab)
    lab.page.evaluate("(id) => window.jupyterapp.shell.activateById(id)", nb["id"])
    lab.page.locator(f"#{nb['id']} .jp-Cell").first.click(button="right")
    lab.page.locator(".lm-Menu-item", has_text="Open Kernel Terminal on This Kernel").first.click()
    wid = wait_new_terminal(lab, 2)
    assert lab.page.evaluate("(id) => window.__kt.widget(id).kernelId", wid) == nb["kernelId"]
    lab.run(wid, "echo menu-$((1+3))", "menu-4")


@pytest.mark.parametrize(
    ("kernel", "reason"),
    [
        (NO_PACKAGE_KERNEL, "codex-exec-kernel is not installed in the kernel's environment"),
        (SHADOWED_PACKAGE_KERNEL, "The codex_exec_kernel module is not an IPython extension"),
    ],
)
def test_kernel_that_cannot_load_the_extension_says_why(lab, kernel, reason):
    nb = new_notebook(lab, kernel=kernel)
    lab.page.click(f"#{nb['id']} .jp-KernelTerminal-toolbarButton")
    lab.page.wait_for_function("() => window.__kt.terminals().length === 1")
    wid = lab.page.evaluate("() => window.__kt.terminals()[0].id")
    lab.page.wait_for_function("(id) => !!window.__kt.widget(id).node.dataset.error", arg=wid)
    error = lab.page.evaluate("(id) => window.__kt.widget(id).node.dataset.error", wid)
    assert reason in error, error
    # The reason is on the panel's screen too (wrapped over rows: compare without spaces).
    lab.page.wait_for_function(
        "([id, r]) => window.__kt.lines(id).join('').replace(/ /g, '').includes(r)",
        arg=[wid, reason.replace(" ", "")],
    )


# ----------------------------------------------------------------------------- a real terminal


def test_full_screen_programs(lab, scratch_dir):
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    path = scratch_dir / "note.txt"
    lab.type(wid, f"vim -u NONE -N {path}\n")
    wait_buffer(lab, wid, "alternate")
    lab.type(wid, "ihello-from-vim")
    lab.page.keyboard.press("Escape")
    lab.type(wid, ":wq\n")
    wait_buffer(lab, wid, "normal")
    lab.wait_prompt(wid)
    assert path.read_text() == "hello-from-vim\n"
    # less: page to the end, quit.
    lab.type(wid, "seq 1 500 | less\n")
    wait_buffer(lab, wid, "alternate")
    lab.page.keyboard.press("G")
    lab.wait_for_text(wid, "500", last=True)
    lab.page.keyboard.press("q")
    wait_buffer(lab, wid, "normal")
    lab.run(wid, "echo after-less-$((2*3))", "after-less-6")


def test_colours_follow_sgr_and_the_jupyterlab_theme(lab):
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    lab.run(wid, r"printf '\033[31mred-%s\033[0m\n' $((6*7))", "red-42")
    line = line_index(lab, wid, "red-42")
    fg = lab.page.evaluate(
        """([id, line]) => {
            const cell = window.__kt.widget(id).terminal.buffer.active.getLine(line).getCell(0);
            return [cell.isFgPalette(), cell.getFgColor()];
        }""",
        [wid, line],
    )
    assert fg == [True, 1]  # palette colour 1: red
    theme = "(id) => window.__kt.widget(id).terminal.options.theme.background"
    light = lab.page.evaluate(theme, wid)
    try:
        lab.execute("apputils:change-theme", {"theme": "JupyterLab Dark"})
        lab.page.wait_for_function(f"([id, bg]) => ({theme})(id) !== bg", arg=[wid, light])
        dark = lab.page.evaluate(theme, wid)
        lab.page.locator("#jupyterlab-splash").wait_for(state="detached")
        lab.run(wid, "clear; ls --color=always -F / | head -12; echo dark-$((1+1))", "dark-2")
        lab.screenshot("kernel-terminal-dark.png", wid)
    finally:
        lab.execute("apputils:change-theme", {"theme": "JupyterLab Light"})
    lab.page.wait_for_function(f"([id, bg]) => ({theme})(id) === bg", arg=[wid, light])
    assert dark != light


def test_font_size_commands_change_the_setting(lab):
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    size = "(id) => [window.__kt.widget(id).terminal.options.fontSize, " \
        "window.__kt.widget(id).terminal.cols]"  # fmt: skip
    before_size, before_cols = lab.page.evaluate(size, wid)
    try:
        lab.execute("codex-exec:increase-font-size")
        lab.execute("codex-exec:increase-font-size")
        lab.page.wait_for_function(
            f"([id, n]) => ({size})(id)[0] === n + 2", arg=[wid, before_size]
        )
        # The panel refits: fewer columns, and the PTY follows.
        lab.page.wait_for_function(f"([id, c]) => ({size})(id)[1] < c", arg=[wid, before_cols])
        cols = lab.page.evaluate(size, wid)[1]
        lab.run(wid, "echo cols=$(tput cols)", f"cols={cols}")
        # It is the user's setting, saved on the server.
        url = lab.server.url + "lab/api/settings/codex-exec-kernel:plugin"
        saved = json.load(urllib.request.urlopen(url))["settings"]
        assert saved["fontSize"] == before_size + 2
    finally:
        lab.execute("codex-exec:decrease-font-size")
        lab.execute("codex-exec:decrease-font-size")
    lab.page.wait_for_function(f"([id, n]) => ({size})(id)[0] === n", arg=[wid, before_size])


def test_copy_and_paste(lab):
    lab.page.context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=lab.server.url.rstrip("/")
    )
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    lab.run(wid, "echo copy-me-$((40+2))", "copy-me-42")
    x, y = lab.page.evaluate(CELL_CENTER, [wid, line_index(lab, wid, "copy-me-42"), 3])
    lab.page.mouse.dblclick(x, y)  # selects the word
    lab.page.wait_for_function(
        "(id) => window.__kt.widget(id).terminal.getSelection() === 'copy-me-42'", arg=wid
    )
    lab.focus(wid)
    lab.page.keyboard.press("Control+C")  # copies (with a selection, no ^C to the shell)
    lab.page.wait_for_function(
        "async () => (await navigator.clipboard.readText()) === 'copy-me-42'"
    )
    # Ctrl+V pastes the clipboard into the shell as typed input.
    lab.page.evaluate("() => navigator.clipboard.writeText('echo pasted-$((2+3))')")
    lab.focus(wid)
    lab.page.keyboard.press("Control+V")
    lab.page.wait_for_function(
        "(id) => window.__kt.lines(id).some(l => l.includes('echo pasted-$((2+3))'))", arg=wid
    )
    lab.page.keyboard.press("Enter")
    lab.wait_for_text(wid, "pasted-5", last=True)
    # The context menu's Paste does the same.
    lab.page.evaluate("() => navigator.clipboard.writeText('echo menu-paste-$((3+4))')")
    box = lab.page.locator(f"#{wid} .xterm-screen").bounding_box()
    lab.page.mouse.click(box["x"] + 20, box["y"] + 20, button="right")
    lab.page.locator(".lm-Menu-item", has_text="Paste").first.click()
    lab.page.wait_for_function(
        "(id) => window.__kt.lines(id).some(l => l.includes('echo menu-paste-$((3+4))'))", arg=wid
    )
    lab.focus(wid)
    lab.page.keyboard.press("Enter")
    lab.wait_for_text(wid, "menu-paste-7", last=True)


def test_links_open_in_a_new_tab(lab):
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    url = lab.server.url + "api/status?from=kernel-terminal"
    lab.run(wid, f"echo {url}", url)
    x, y = lab.page.evaluate(CELL_CENTER, [wid, line_index(lab, wid, url), 8])
    lab.page.mouse.move(x, y)
    lab.page.wait_for_function(
        "(id) => window.__kt.widget(id).node.querySelector('.xterm-screen')"
        ".classList.contains('xterm-cursor-pointer')",
        arg=wid,
    )
    with lab.page.context.expect_page() as popup:
        lab.page.mouse.click(x, y)
    popup.value.wait_for_url(url)
    popup.value.close()


def test_title_shows_the_shell_then_the_program(lab):
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    label = "(id) => window.__kt.widget(id).title.label"
    assert re.match(r"bash( @ \S+)?$", lab.page.evaluate(label, wid))
    lab.type(wid, r"printf '\033]0;%s\007' build-$((40+2))" + "\n")
    lab.page.wait_for_function(f"(id) => ({label})(id) === 'build-42'", arg=wid)
    caption = lab.page.evaluate("(id) => window.__kt.widget(id).title.caption", wid)
    assert "process term-" in caption


# ------------------------------------------------------------------ one process, many views


def test_two_panels_show_the_same_process(lab):
    first = lab.open_terminal()
    lab.wait_prompt(first)
    kernel_id, process_id = lab.page.evaluate(
        "(id) => [window.__kt.widget(id).kernelId, window.__kt.widget(id).processId]", first
    )
    second = lab.open_terminal({"kernelId": kernel_id, "processId": process_id})
    assert lab.page.evaluate("(id) => window.__kt.widget(id).processId", second) == process_id
    lab.run(second, "echo both-$((3*3))", "both-9")
    lab.wait_for_text(first, "both-9", last=True)
    lab.run(first, "echo again-$((2*2))", "again-4")
    lab.wait_for_text(second, "again-4", last=True)


def test_sidebar_signals_and_terminates_a_process(lab):
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    kernel_id, pid = lab.page.evaluate(
        "(id) => [window.__kt.widget(id).kernelId, window.__kt.widget(id).processId]", wid
    )
    lab.run(wid, "trap 'echo got-usr1' USR1; echo trap-$((1+1))-set", "trap-2-set")
    lab.execute("codex-exec:show-processes", {"kernelId": kernel_id})
    row = lab.page.locator(f".jp-KernelProcesses-row[data-process-id='{pid}']")
    row.wait_for()
    assert "running" in row.inner_text()
    row.locator(".jp-KernelProcesses-signal").select_option("usr1")
    lab.wait_for_text(wid, "got-usr1")
    row.locator("button[data-action='terminate']").click()
    lab.wait_for_text(wid, "[process ")
    status = row.locator(".jp-KernelProcesses-status")
    status.filter(has_text=re.compile(r"^(killed|exited) ")).wait_for()
    assert re.fullmatch(r"killed \(SIG[A-Z]+\)|exited \(\d+\)", status.inner_text())


def test_lost_connection_refills_missed_output(lab):
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    lab.page.evaluate(
        """(id) => {
            const kernel = window.__kt.widget(id)._conn.kernel;
            window.__connection = [];
            kernel.connectionStatusChanged.connect((_, s) => window.__connection.push(s));
        }""",
        wid,
    )
    lab.type(wid, "for i in $(seq 1 60); do echo L$i; sleep 0.05; done; echo loop-$((1+1))-done\n")
    lab.wait_for_text(wid, "L5", last=True)
    # Drop the kernel's websocket mid-stream; JupyterLab reconnects.
    lab.page.evaluate("(id) => window.__kt.widget(id)._conn.kernel._ws.close()", wid)
    lab.page.wait_for_function("() => window.__connection.includes('connecting')")
    lab.wait_for_text(wid, "loop-2-done", last=True, timeout=60)
    assert "connected" in lab.page.evaluate("() => window.__connection")
    got = [line.strip() for line in lab.lines(wid) if re.fullmatch(r"L\d+", line.strip())]
    assert got == [f"L{i}" for i in range(1, 61)], got
    lab.run(wid, "echo still-$((5+5))", "still-10")


def test_lost_notifications_are_refilled_in_order(lab):
    """Drop every 7th output notification before the panel sees it (as a lossy IOPub
    would): the panel notices the seq hole and fetches it with process/read."""
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    lab.page.evaluate(
        """(id) => {
            const conn = window.__kt.widget(id)._conn;
            const pid = window.__kt.widget(id).processId;
            const deliver = conn._onMsg.bind(conn);
            window.__dropped = 0;
            let n = 0;
            conn._onMsg = msg => {
                const d = msg.content.data;
                if (d.method === 'process/output' && d.params.processId === pid && ++n % 7 === 0) {
                    window.__dropped++;
                    return;
                }
                deliver(msg);
            };
        }""",
        wid,
    )
    lab.type(wid, "for i in $(seq 1 80); do echo R$i; sleep 0.01; done; echo refill-$((1+1))\n")
    lab.wait_for_text(wid, "refill-2", last=True, timeout=60)
    assert lab.page.evaluate("() => window.__dropped") >= 5
    got = [line.strip() for line in lab.lines(wid) if re.fullmatch(r"R\d+", line.strip())]
    assert got == [f"R{i}" for i in range(1, 81)], got


# ----------------------------------------------------------------------------- the demo workspace


def test_demo_workspace_opens_notebook_and_terminal(lab, lab_server):
    """What `make lab` and Binder open: the demo notebook, a Kernel Terminal below it."""
    examples = lab_server.root / "examples"
    examples.mkdir(exist_ok=True)
    shutil.copy(ROOT / "examples" / "demo.ipynb", examples / "demo.ipynb")
    subprocess.run(
        [str(BIN / "jupyter"), "lab", "workspaces", "import",
         str(ROOT / "examples" / "demo.jupyterlab-workspace")],
        env=lab_server.env, check=True, capture_output=True, timeout=scaled(60),
    )  # fmt: skip
    lab.page.goto(lab_server.url + "lab/workspaces/codex-exec-demo")
    lab.wait_restored()
    lab.page.wait_for_function("() => !!window.__kt.widget('codex-exec-terminal-demo')")
    lab.page.evaluate("() => window.__kt.widget('codex-exec-terminal-demo').ready")
    wid = "codex-exec-terminal-demo"
    lab.wait_prompt(wid)
    lab.run(wid, "echo demo-$((2*21))", "demo-42")
    assert lab.page.evaluate(
        "() => [...window.jupyterapp.shell.widgets('main')]"
        ".some(w => w.context && w.context.path === 'examples/demo.ipynb')"
    )
    lab.screenshot("demo-workspace.png")
