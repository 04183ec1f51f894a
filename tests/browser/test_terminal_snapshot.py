"""A Kernel Terminal that comes back (reload, sidebar Attach) starts from the kernel's
screen snapshot (issue 14), in a real JupyterLab (headless Chromium).

The kernel keeps only a few KiB of output per process here (``ExecService.retained_bytes``
in the kernel's config), so the bytes that switched to the alternate screen and drew the
first screen of ``vim`` or ``less`` are evicted before the reload: a raw replay cannot
redraw it. The restored panel's xterm must equal, cell by cell, a reference xterm
(@xterm/headless, tests/xterm_ref) fed every byte the process wrote since it started,
recorded in the page.
"""

from __future__ import annotations

import base64
import json
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from commands import CODEX_EXEC
from conftest import RESULTS_DIR, ROOT, LabServer, ms, new_lab, start_lab, stop, wait_saved
from screen_programs import VIM_REDRAWS, long_file, vim_argv
from screen_ref import differences, reference, text
from waiting import scaled, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("vim") is None,
                       reason="needs vim (make test installs it with apt-get)"),
]

#: Output the kernel keeps per process: a few vim screens.
RETAINED = 16 * 1024
#: The page-side state dump, the same code the reference runs (tests/xterm_ref/state.mjs).
STATE_JS = (ROOT / "tests" / "xterm_ref" / "state.mjs").read_text().replace("export ", "")

#: ``window.__rec``: every output chunk of the panel's process by seq, from seq 1 (what
#: the kernel still retains when installed, then the live events).
RECORDER = """async (id) => {
    const w = window.__kt.widget(id);
    const conn = w._link.connection;
    const pid = w.processId;
    const chunks = new Map();
    window.__rec = {pid, chunks};
    conn.processEvent.connect((_, ev) => {
      if (ev.processId === pid && ev.kind === 'output') chunks.set(ev.seq, ev.data.slice());
    });
    const r = await conn.request('process/read', {processId: pid, afterSeq: 0, maxBytes: 1 << 20});
    for (const c of r.chunks) {
      if (typeof c.chunk === 'string') {
        chunks.set(c.seq, Uint8Array.from(atob(c.chunk), ch => ch.charCodeAt(0)));
      } else {
        const b = r.__buffers__[c.chunk.buffer];
        chunks.set(c.seq, new Uint8Array(b.buffer ?? b, b.byteOffset ?? 0, b.byteLength).slice());
      }
    }
    return r.firstRetainedSeq;
}"""

#: The recorded chunks in seq order, base64, and whether the seqs run without a hole.
RECORDED = """() => {
    const seqs = [...window.__rec.chunks.keys()].sort((a, b) => a - b);
    const b64 = bytes => {
      let s = '';
      for (let i = 0; i < bytes.length; i += 0x8000) {
        s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      }
      return btoa(s);
    };
    return {seqs, chunks: seqs.map(s => b64(window.__rec.chunks.get(s)))};
}"""

#: Whether the kernel still retains the bytes that switched to the alternate screen.
RETAINS_ALT_SWITCH = """async (id) => {
    const w = window.__kt.widget(id);
    const r = await w._link.connection.request(
        'process/read', {processId: w.processId, afterSeq: 0, maxBytes: 1 << 20});
    let all = '';
    for (const c of r.chunks) {
      all += typeof c.chunk === 'string' ? atob(c.chunk)
        : new TextDecoder('latin1').decode(r.__buffers__[c.chunk.buffer]);
    }
    return {retainsSwitch: all.includes('\\x1b[?1049h'), firstRetainedSeq: r.firstRetainedSeq};
}"""


def page_state(lab: Any, wid: str) -> dict[str, Any]:
    """The panel's xterm state in screen.mjs's form."""
    return lab.page.evaluate(
        """([src, id]) => {
            const w = window.__kt.widget(id);
            const termState = new Function(src + '; return termState;')();
            return termState(w.terminal, w._processTitle || '');
        }""",
        [STATE_JS, wid],
    )


def term_size(lab: Any, wid: str) -> tuple[int, int, int]:
    return tuple(
        lab.page.evaluate(
            "(id) => { const t = window.__kt.widget(id).terminal;"
            " return [t.rows, t.cols, t.options.scrollback]; }",
            wid,
        )
    )


def active_text(lab: Any, wid: str) -> str:
    return lab.page.evaluate(
        """(id) => {
            const t = window.__kt.widget(id).terminal, b = t.buffer.active, out = [];
            for (let y = b.baseY; y < b.baseY + t.rows; y++) {
              out.push(b.getLine(y).translateToString(true));
            }
            return b.type + '\\n' + out.join('\\n');
        }""",
        wid,
    )


def wait_screen(lab: Any, wid: str, needle: str, buffer: str, timeout: float = 30) -> None:
    try:
        lab.page.wait_for_function(
            """([id, needle, type]) => {
                const w = window.__kt.widget(id);
                if (!w) return false;
                const b = w.terminal.buffer.active;
                if (b.type !== type) return false;
                for (let y = b.baseY; y < b.baseY + w.terminal.rows; y++) {
                  if (b.getLine(y).translateToString(true).includes(needle)) return true;
                }
                return false;
            }""",
            arg=[wid, needle, buffer], timeout=ms(timeout), polling=100,
        )  # fmt: skip
    except Exception as exc:
        raise AssertionError(f"{needle!r} not on the {buffer} screen; it shows:\n"
                             + active_text(lab, wid)) from exc  # fmt: skip


@pytest.fixture(scope="module")
def snapshot_server(
    jupyter_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabServer]:
    """A JupyterLab whose codex-exec kernels retain only RETAINED bytes per process."""
    base = tmp_path_factory.mktemp("snapshot-lab")
    profile = base / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "codex_exec_kernel_config.py").write_text(
        f"c.ExecService.retained_bytes = {RETAINED}\n"
    )
    env = {
        **jupyter_env,
        "IPYTHONDIR": str(base / "ipython"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "CODEX_EXEC_HOME": str(base / "codex-exec-home"),
    }
    root = base / "root"
    root.mkdir()
    server = start_lab(env, root, base / "lab-server.log")
    yield server
    subprocess.run([CODEX_EXEC, "session", "delete", *session_ids(env)], env=env,
                   capture_output=True, timeout=scaled(60))  # fmt: skip
    stop(server.proc)


def log_size(env: dict[str, str], session_id: str) -> int:
    out = subprocess.run([CODEX_EXEC, "session", "list", "--json"], env=env,
                         capture_output=True, text=True, timeout=scaled(60))  # fmt: skip
    sessions = json.loads(out.stdout)["sessions"]
    return next(s["outputBytes"] for s in sessions if s["id"] == session_id)


def session_ids(env: dict[str, str]) -> list[str]:
    out = subprocess.run([CODEX_EXEC, "session", "list", "--json"], env=env,
                         capture_output=True, text=True, timeout=scaled(60))  # fmt: skip
    return [s["id"] for s in json.loads(out.stdout or '{"sessions": []}')["sessions"]]


@pytest.fixture
def slab(browser: Any, snapshot_server: LabServer) -> Iterator[Any]:
    context, lab = new_lab(browser, snapshot_server)
    yield lab
    context.close()


#: Times, in the page, ``process/snapshot`` (what a panel now asks) and ``process/read``
#: from seq 0 (the raw replay it asked before) of the same process; median of 20 each.
ROUND_TRIPS = """async (id) => {
    const w = window.__kt.widget(id), conn = w._link.connection, t = w.terminal;
    const size = (chunk, buffers) => typeof chunk === 'string' ? atob(chunk).length
        : (buffers?.[chunk.buffer]?.byteLength ?? 0);
    const median = xs => xs.sort((a, b) => a - b)[xs.length >> 1];
    const out = {};
    for (const [name, method, params] of [
        ['snapshot', 'process/snapshot', {processId: w.processId, rows: t.rows, cols: t.cols}],
        ['replay', 'process/read', {processId: w.processId, afterSeq: 0, maxBytes: 1 << 20}]]) {
      const ms = [];
      let bytes = 0;
      for (let i = 0; i < 20; i++) {
        const t0 = performance.now();
        const r = await conn.request(method, params);
        ms.push(performance.now() - t0);
        bytes = method === 'process/read'
          ? r.chunks.reduce((n, c) => n + size(c.chunk, r.__buffers__), 0)
          : size(r.chunk, r.__buffers__);
      }
      out[name] = {medianMs: median(ms), bytes};
    }
    return out;
}"""


def measure(lab: Any, wid: str, name: str) -> None:
    """Record what a reattach costs now (snapshot) and before (replay): figures, not
    asserts (benchmarks/results/browser-snapshot.json with ``make bench``)."""
    figures = lab.page.evaluate(ROUND_TRIPS, wid)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "browser-snapshot.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results[name] = {**figures, "retainedBytes": RETAINED, "size": term_size(lab, wid)[:2]}
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{name}: snapshot {figures['snapshot']}; replay {figures['replay']}")


@dataclass(frozen=True)
class Program:
    """A full-screen program, keys that leave a known screen, and how to quit it."""

    name: str
    argv: Callable[[Path], list[str]]
    mark: tuple[str, str]  # keys, then a text on the screen they leave
    after: tuple[str, str]
    quit: str


PROGRAMS = [
    Program("vim", lambda path: vim_argv(path), (":echo 'before-' . (6*7)\n", "before-42"),
            (":echo 'after-' . (6*7)\n", "after-42"), ":q\n"),
    Program("less", lambda path: ["env", "LESS=", "less", str(path)],
            ("1000g", "line 1000 of the long file"), ("2000g", "line 2000 of the long file"),
            "q"),
]  # fmt: skip


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.name)
def test_reload_shows_the_exact_screen(slab: Any, snapshot_server: LabServer,
                                       program: Program) -> None:  # fmt: skip
    lab = slab
    path = long_file(snapshot_server.root)
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    first_retained = lab.page.evaluate(RECORDER, wid)
    assert first_retained == 1, "the shell's first output is needed for the reference"
    process_id = lab.page.evaluate("(id) => window.__kt.widget(id).processId", wid)
    lab.type(wid, shlex.join(program.argv(path)) + "\n")
    wait_screen(lab, wid, "line 1 of the long file", "alternate")
    # Page down until the bytes that drew the first screen are evicted.
    for page in range(1, 80):
        lab.page.keyboard.press("Control+f")
        shown = lab.page.evaluate(RETAINS_ALT_SWITCH, wid)
        if not shown["retainsSwitch"] and page >= 4:
            break
    else:
        pytest.fail(f"retention never evicted the alternate-screen switch: {shown}")
    # Keys that leave a known screen: it settles on it.
    lab.type(wid, program.mark[0])
    wait_screen(lab, wid, program.mark[1], "alternate")
    before = page_state(lab, wid)
    rows, cols, scrollback = term_size(lab, wid)
    recorded = lab.page.evaluate(RECORDED)
    seqs = recorded["seqs"]
    assert seqs == list(range(1, len(seqs) + 1)), "the recorder missed output"
    steps = [base64.b64decode(c) for c in recorded["chunks"]]
    want = reference(rows, cols, steps, scrollback=scrollback)
    assert not differences(before, want, viewport_only=True), "the reference is not the panel"
    wait_saved(lab, process_id)

    lab.goto(reset=False)
    wid2 = lab.only_terminal()
    assert lab.page.evaluate("(id) => window.__kt.widget(id).processId", wid2) == process_id
    assert term_size(lab, wid2) == (rows, cols, scrollback)
    wait_screen(lab, wid2, program.mark[1], "alternate")
    got = page_state(lab, wid2)
    diffs = differences(got, want)
    assert not diffs, "\n".join(diffs) + "\n--- shown:\n" + text(got) + "\n--- want:\n" + text(want)
    assert "no longer retained" not in lab.text(wid2)

    measure(lab, wid2, program.name)

    # A second viewer of the same process (the sidebar's Open) starts from it too.
    kernel_id = lab.page.evaluate("(id) => window.__kt.widget(id).kernelId", wid2)
    wid3 = lab.open_terminal({"kernelId": kernel_id, "processId": process_id})
    assert term_size(lab, wid3) == (rows, cols, scrollback), "the second panel's size differs"
    wait_screen(lab, wid3, program.mark[1], "alternate")
    diffs = differences(page_state(lab, wid3), want)
    assert not diffs, "second viewer:\n" + "\n".join(diffs)
    lab.page.evaluate("(id) => window.__kt.widget(id).close()", wid3)

    # Keystrokes go to the program; what it prints after the snapshot appears once,
    # in order.
    lab.type(wid2, program.after[0])
    wait_screen(lab, wid2, program.after[1], "alternate")
    lab.type(wid2, program.quit)
    wait_screen(lab, wid2, "", "normal")
    lab.type(wid2, "for i in 1 2 3; do echo order-$i; done\n")
    lab.wait_for_text(wid2, "order-3", last=True)
    lines = [line.strip() for line in lab.lines(wid2)]
    marks = [line for line in lines if line.startswith("order-")]
    assert marks == ["order-1", "order-2", "order-3"], marks


def test_sidebar_attach_shows_a_sessions_vim_screen(slab: Any, snapshot_server: LabServer
                                                    ) -> None:  # fmt: skip
    lab = slab
    path = long_file(snapshot_server.root)
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    kernel_id = lab.page.evaluate("(id) => window.__kt.widget(id).kernelId", wid)
    session_id = f"vim-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        [CODEX_EXEC, "session", "create", "--id", session_id, "--tty", "--size", "30x90",
         "--env", "TERM=xterm-256color", "--",
         *vim_argv(path, VIM_REDRAWS)],
        env=snapshot_server.env, cwd=ROOT, check=True, timeout=scaled(60),
    )  # fmt: skip
    wait_until(lambda: log_size(snapshot_server.env, session_id) > 256 * 1024,
               timeout=60, message="vim's redraws")  # fmt: skip
    lab.execute("codex-exec:show-processes", {"kernelId": kernel_id})
    row = lab.page.locator(f".jp-KernelProcesses-row[data-session-id='{session_id}']")
    row.wait_for(timeout=ms(20))
    row.locator("button[data-action='attach']").click()
    lab.page.wait_for_function("() => window.__kt.terminals().length === 2", timeout=ms(20))
    wid2 = lab.page.evaluate("() => window.__kt.terminals().find(w => w.state.sessionId).id")
    lab.page.evaluate("(id) => window.__kt.widget(id).ready", wid2)
    # vim's screen in its alternate buffer, at the panel's size (it redraws after the
    # resize); keys reach it.
    wait_screen(lab, wid2, "line 1 of the long file", "alternate")
    rows = term_size(lab, wid2)[0]
    wait_screen(lab, wid2, f"line {rows - 1} of the long file", "alternate")
    lab.type(wid2, ":echo 'attached-' . (6*7)\n")
    wait_screen(lab, wid2, "attached-42", "alternate")
    lab.type(wid2, ":q\n")
    lab.wait_for_text(wid2, "exited with code 0", timeout=30)
