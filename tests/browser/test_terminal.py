"""Kernel Terminal panel in a real JupyterLab (headless Chromium).

Every wait is on an event or a condition with a timeout; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import time
import uuid
from typing import Any

import psutil
import pytest
from commands import CODEX_EXEC
from conftest import IMG_DIR, RESULTS_DIR, ROOT, ms, new_notebook, wait_saved
from waiting import scaled

pytestmark = pytest.mark.browser

#: Lines from the end of the buffer searched for a flood's end marker.
FLOOD_TAIL_LINES = 60


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def test_echo_42(lab):
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    lab.run(wid, "echo $((6*7))", "42")
    # A tidy screen for the docs: colours and a full listing.
    lab.run(
        wid,
        "clear; echo $((6*7)); ls -l --color=always /usr | head -8; echo shot-ready",
        "shot-ready",
    )
    lab.screenshot("kernel-terminal.png", wid)


#: Installs ``window.__lat``: for each armed key press, the time from ``keydown``
#: until xterm has parsed the echo, and until the animation frame that paints it.
#: ``until(n)`` resolves once ``n`` echoes were timed: the test waits on that promise,
#: not by polling (Playwright's default polling runs a requestAnimationFrame loop, and a
#: frame pending at the key press delays the echo in Chromium: see benchmarks/README.md).
LATENCY_PROBE = """([term, ws]) => {
    if (window.__lat) window.__lat.dispose();
    const pos = () => {
      const b = term.buffer.active;
      return (b.baseY + b.cursorY) * term.cols + b.cursorX;
    };
    const st = {samples: [], frames: [], t0: null, target: 0, armed: false, pos, waiters: [],
                hops: [], sent: null, received: null};
    // The terminal's websocket, when given: when the key left the page and when the
    // first message after it arrived (the echo: nothing else is sent or received).
    const send = ws && ws.send;
    if (ws) ws.send = (data) => {
      if (st.t0 !== null && st.sent === null) st.sent = performance.now();
      return send.call(ws, data);
    };
    // Ahead of the connection's own handler, which may parse the echo synchronously.
    const onmessage = ws && ws.onmessage;
    if (ws) ws.onmessage = (event) => {
      if (st.sent !== null && st.received === null) st.received = performance.now();
      return onmessage.call(ws, event);
    };
    st.until = (n, ms) => new Promise((resolve, reject) => {
      if (st.samples.length >= n) return resolve(true);
      const timer = setTimeout(() => reject(new Error(`no echo ${n} in ${ms} ms`)), ms);
      st.waiters.push({n, done: () => { clearTimeout(timer); resolve(true); }});
    });
    const onKey = () => {
      if (st.armed) {
        st.t0 = performance.now(); st.target = pos() + 1; st.sent = st.received = null;
      }
    };
    document.addEventListener('keydown', onKey, true);
    const parsed = term.onWriteParsed(() => {
      if (st.t0 !== null && pos() >= st.target) {
        const t0 = st.t0, now = performance.now();
        st.samples.push(now - t0);
        if (st.sent !== null && st.received !== null) {
          st.hops.push([st.sent - t0, st.received - st.sent, now - st.received]);
        }
        st.t0 = null;
        // The frame that paints the echo starts with this callback.
        requestAnimationFrame(() => st.frames.push(performance.now() - t0));
        const ready = st.waiters.filter(w => w.n <= st.samples.length);
        st.waiters = st.waiters.filter(w => w.n > st.samples.length);
        ready.forEach(w => w.done());
      }
    });
    st.dispose = () => {
      document.removeEventListener('keydown', onKey, true);
      parsed.dispose();
      if (ws) { ws.send = send; ws.onmessage = onmessage; }
    };
    window.__lat = st;
}"""

#: Keys per terminal, in blocks that alternate between the two terminals.
LATENCY_KEYS = 60
LATENCY_BLOCK = 20
#: Pause between keys: a fast typist (about 20 keys/s); each key waits for its echo first.
TYPING_PACE_MS = 50


def time_keystrokes(
    lab, term_handle, total: int, ws_handle: Any = None, hops: list | None = None
) -> tuple[list[float], list[float]]:
    """Type ``total`` letters into the focused terminal, one at a time, each once the
    previous one's echo is in xterm's buffer and a typing pause has passed; then clear
    the line. Returns (to parse, to frame) in ms; with the terminal's websocket, adds
    (keydown -> sent, sent -> echo received, received -> parsed) per key to ``hops``."""
    lab.page.evaluate(LATENCY_PROBE, [term_handle, ws_handle])
    keys = "abcdefghijklmnopqrstuvwxyz"
    per_line = 50  # then clear the line: no wrapping at the terminal's edge
    for start in range(0, total, per_line):
        home = lab.page.evaluate("() => window.__lat.pos()")
        lab.page.evaluate("() => { window.__lat.armed = true; }")
        for i in range(start, min(total, start + per_line)):
            lab.page.keyboard.press(keys[i % len(keys)])
            lab.page.evaluate("([n, ms]) => window.__lat.until(n, ms)", [i + 1, ms(10)])
            lab.page.wait_for_timeout(TYPING_PACE_MS)  # the typist's pause, not a wait
        lab.page.evaluate("() => { window.__lat.armed = false; }")
        lab.page.keyboard.press("Control+U")  # kill the line, back to the prompt
        lab.page.wait_for_function(
            "(h) => window.__lat.pos() === h", arg=home, timeout=ms(10), polling=20
        )
    lab.page.wait_for_function("(n) => window.__lat.frames.length >= n", arg=total, polling=20)
    samples, frames, got_hops = lab.page.evaluate(
        "() => { const st = window.__lat; st.dispose(); return [st.samples, st.frames, st.hops]; }"
    )
    assert len(samples) == total
    if hops is not None:
        hops += got_hops
    return samples, frames


def open_jupyterlab_terminal(lab) -> Any:
    """JupyterLab's own terminal (terminado) with its default settings; returns a handle
    to its xterm."""
    lab.page.evaluate(
        """async () => {
            const w = await window.jupyterapp.commands.execute('terminal:create-new');
            window.__stockTerm = w;
        }"""
    )
    lab.page.wait_for_function(
        """() => { const t = window.__stockTerm.content._term; if (!t) return false;
                   const b = t.buffer.active;
                   const l = b.getLine(b.baseY + b.cursorY);
                   return !!l && /[$#] ?$/.test(l.translateToString(true).trimEnd() + ' '); }""",
        timeout=ms(30),
        polling=100,
    )
    focus_jupyterlab_terminal(lab)
    return lab.page.evaluate_handle("() => window.__stockTerm.content._term")


def focus_jupyterlab_terminal(lab) -> None:
    lab.page.evaluate(
        "() => { window.jupyterapp.shell.activateById(window.__stockTerm.id);"
        " window.__stockTerm.content._term.focus(); }"
    )


#: What a terminal's xterm renders with: JupyterLab picks WebGL when the page can make a
#: WebGL context, else its canvas addon; the Kernel Terminal uses xterm's DOM renderer.
RENDERER = """(term) => {
    if (term.element.querySelector('.xterm-rows')) return 'dom';
    // xterm's addon manager (private) holds the renderer addon: WebGL's has onContextLoss.
    const addons = (term._addonManager && term._addonManager._addons) || [];
    if (addons.some(a => a.instance && 'onContextLoss' in a.instance)) return 'webgl';
    return term.element.querySelector('canvas') ? 'canvas' : 'unknown';
}"""


def latency_figures(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p90_ms": round(percentile(samples, 90), 2),
        "p99_ms": round(percentile(samples, 99), 2),
        "fastest_ms": round(min(samples), 2),
        "max_ms": round(max(samples), 2),
    }


#: A stock kernel's comm target that sends every message straight back.
COMM_ECHO_TARGET = (
    "def _bench_echo_open(comm, msg):\n"
    "    comm.on_msg(lambda m: comm.send(m['content']['data'], buffers=m['buffers']))\n"
    "get_ipython().kernel.comm_manager.register_target('bench.echo', _bench_echo_open)\n"
)

#: [our write -> output ms], [bare comm echo ms], measured at the kernel connections.
COMM_ROUND_TRIPS = """async ([id, code]) => {
    const w = window.__kt.widget(id);
    const conn = w._conn, pid = w._state.processId;
    const stock = await window.jupyterapp.serviceManager.kernels.startNew({name: 'python3'});
    await stock.info;
    await stock.requestExecute({code}).done;
    const comm = stock.createComm('bench.echo');
    await comm.open({}).done;
    const next = (kernel, match) => new Promise(resolve => {
      const on = (_, {direction, msg}) => {
        if (direction === 'recv' && match(msg)) {
          kernel.anyMessage.disconnect(on);
          resolve(performance.now());
        }
      };
      kernel.anyMessage.connect(on);
    });
    const pause = () => new Promise(r => setTimeout(r, 50));
    const ours = [], bare = [];
    for (let i = 0; i < 60; i++) {
      let t0 = performance.now();
      let got = next(conn.kernel, m => m.header.msg_type === 'comm_msg'
        && m.content.comm_id === conn.commId && m.content.data.method === 'process/output');
      conn.notify('process/write', {processId: pid, chunk: {buffer: 0}},
                  [new TextEncoder().encode('x')]);
      ours.push(await got - t0);
      await pause();
      t0 = performance.now();
      got = next(stock, m => m.header.msg_type === 'comm_msg'
        && m.content.comm_id === comm.commId);
      comm.send({i}, undefined, [new Uint8Array([120])]);
      bare.push(await got - t0);
      await pause();
    }
    conn.notify('process/write', {processId: pid, chunk: {buffer: 0}},
                [new TextEncoder().encode('\\x15')]);
    await stock.shutdown();
    return [ours, bare];
}"""


def hop_medians(hops: list[list[float]]) -> dict[str, float]:
    names = ("keydown_to_sent", "sent_to_echo_received", "received_to_parsed")
    return {n: round(statistics.median(h[i] for h in hops), 2) for i, n in enumerate(names)}


def test_keystroke_latency(lab):
    """Key press to echoed character in xterm's buffer (``keydown`` -> ``onWriteParsed``),
    measured in the page, against JupyterLab's own terminal at its default settings in
    the same page: 60 keys each, in alternating blocks of 20, both terminals focused."""
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    lab.focus(wid)
    ours = lab.page.evaluate_handle("(id) => window.__kt.widget(id).terminal", wid)
    # Count the panel's comm traffic: one process/write notification per keystroke and
    # nothing else while typing; the only requests are the stream's tail checks once
    # output is quiet (src/stream.ts), at most one per pause.
    lab.page.evaluate(
        """(id) => {
            const conn = window.__kt.widget(id)._conn;
            const counts = window.__commCounts = {writes: 0, other: [], responses: 0};
            conn.kernel.anyMessage.connect((_, {direction, msg}) => {
                if (msg.header.msg_type !== 'comm_msg' || msg.content.comm_id !== conn.commId) {
                    return;
                }
                const data = msg.content.data;
                if (direction === 'send' && data.method === 'process/write') counts.writes++;
                else if (direction === 'send') counts.other.push(data.method);
                if (direction === 'recv' && data.method === undefined) counts.responses++;
            });
        }""",
        wid,
    )
    stock = open_jupyterlab_terminal(lab)
    stock_renderer = lab.page.evaluate(RENDERER, stock)
    stock_options = lab.page.evaluate("() => window.__stockTerm.content._options")
    samples: list[float] = []
    frames: list[float] = []
    stock_samples: list[float] = []
    stock_frames: list[float] = []
    blocks = LATENCY_KEYS // LATENCY_BLOCK
    ours_ws = lab.page.evaluate_handle("(id) => window.__kt.widget(id)._conn.kernel._ws", wid)
    stock_ws = lab.page.evaluate_handle("() => window.__stockTerm.content.session._ws")
    hops: list[list[float]] = []
    stock_hops: list[list[float]] = []
    for _ in range(blocks):
        lab.focus(wid)
        got = time_keystrokes(lab, ours, LATENCY_BLOCK, ours_ws, hops)
        samples += got[0]
        frames += got[1]
        focus_jupyterlab_terminal(lab)
        got = time_keystrokes(lab, stock, LATENCY_BLOCK, stock_ws, stock_hops)
        stock_samples += got[0]
        stock_frames += got[1]
    counts = lab.page.evaluate("() => window.__commCounts")
    assert counts["writes"] == len(samples) + blocks, counts  # + one Ctrl+U per block
    assert set(counts["other"]) <= {"process/read", "process/ack"}, counts
    # One tail check per quiet spell: after the prompt, and after each block.
    assert counts["other"].count("process/read") <= blocks + 1, counts
    assert counts["responses"] == counts["other"].count("process/read"), counts
    lab.page.evaluate("() => window.__stockTerm.content.session.shutdown()")
    lab.page.evaluate("(id) => window.jupyterapp.shell.activateById(id)", wid)
    # The same echo without the keyboard or xterm, against the floor of any comm:
    # the panel's process/write notification of one byte until its process/output
    # reaches the kernel connection, and a bare comm echo in a stock ipykernel (a
    # target that sends each message back), through the same server, interleaved.
    direct, bare = lab.page.evaluate(COMM_ROUND_TRIPS, [wid, COMM_ECHO_TARGET])
    ours_fig, stock_fig = latency_figures(samples), latency_figures(stock_samples)
    ours_fig["hops_p50_ms"], stock_fig["hops_p50_ms"] = hop_medians(hops), hop_medians(stock_hops)
    result = {
        "what": "keydown -> xterm's onWriteParsed of the echoed character, measured in the "
        "page: the Kernel Terminal (bash readline echo through the codex.exec comm) against "
        "JupyterLab's own terminal (terminado) at its default settings, same page, both "
        "focused; 60 keys each in alternating blocks of 20, one key every "
        f"{TYPING_PACE_MS} ms after the previous echo",
        "keystrokes": len(samples),
        **ours_fig,
        "mean_ms": round(statistics.fmean(samples), 2),
        "to_frame_p50_ms": round(statistics.median(frames), 2),
        "to_frame_what": "key press until the animation frame that paints the echo begins",
        "renderer": lab.page.evaluate(RENDERER, ours),
        "jupyterlab_terminal": {
            **stock_fig,
            "to_frame_p50_ms": round(statistics.median(stock_frames), 2),
            "renderer": stock_renderer,
            "options": stock_options,
        },
        "ratio_p50_ours_vs_jupyterlab_terminal": round(
            ours_fig["p50_ms"] / stock_fig["p50_ms"], 3
        ),
        "ratio_p99_ours_vs_jupyterlab_terminal": round(
            ours_fig["p99_ms"] / stock_fig["p99_ms"], 3
        ),
        "ratio_fastest_ours_vs_jupyterlab_terminal": round(
            ours_fig["fastest_ms"] / stock_fig["fastest_ms"], 3
        ),
        "hops_what": "per key, medians: keydown until the terminal's websocket sent it, "
        "until the first websocket message after it (the echo), until xterm parsed it",
        "write_to_output_p50_ms": round(statistics.median(direct), 2),
        "write_to_output_p99_ms": round(percentile(direct, 99), 2),
        "bare_comm_echo_p50_ms": round(statistics.median(bare), 2),
        "bare_comm_echo_p99_ms": round(percentile(bare, 99), 2),
        "ratio_p50_write_to_output_vs_bare_comm_echo": round(
            statistics.median(direct) / statistics.median(bare), 3
        ),
        "comm_what": "in the page, no keyboard, no xterm: the panel's process/write "
        "notification of one byte to the shell until its process/output reaches the kernel "
        "connection, against a bare comm echo in a stock python3 ipykernel (JupyterLab's "
        "default comm routing) through the same server; 60 each, interleaved, 50 ms apart",
        "browser": "headless Debian chromium",
        "server": "jupyter lab on loopback with codex_exec_kernel.serverext (TCP_NODELAY)",
        "repeat": "CODEX_EXEC_RESULTS_DIR=benchmarks/results .venv/bin/python -m pytest "
        "tests/browser/test_terminal.py -k keystroke_latency -s",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "browser-latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\nkeydown->echo parsed, {len(samples)} keys each: Kernel Terminal p50 "
        f"{ours_fig['p50_ms']} / p99 {ours_fig['p99_ms']} / fastest {ours_fig['fastest_ms']} ms; "
        f"JupyterLab's terminal ({stock_renderer}) p50 {stock_fig['p50_ms']} / p99 "
        f"{stock_fig['p99_ms']} / fastest {stock_fig['fastest_ms']} ms; ratio p50 "
        f"{result['ratio_p50_ours_vs_jupyterlab_terminal']}, p99 "
        f"{result['ratio_p99_ours_vs_jupyterlab_terminal']}; write->echo p50 "
        f"{result['write_to_output_p50_ms']} ms vs bare comm echo "
        f"{result['bare_comm_echo_p50_ms']} ms; hops: ours {ours_fig['hops_p50_ms']}, "
        f"theirs {stock_fig['hops_p50_ms']}"
    )
    assert result["p50_ms"] < 100, result


def test_cursor_blinks_without_css_animation(lab):
    """The panel blinks the cursor itself (src/cursor.ts): on and off while focused,
    solid again as soon as output arrives, still when the terminal loses focus."""
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    lab.focus(wid)
    off = "(id) => window.__kt.widget(id).node.classList.contains('jp-mod-cursorOff')"
    # xterm's own blink (an endless CSS animation) stays off.
    assert (
        lab.page.evaluate("(id) => window.__kt.widget(id).terminal.options.cursorBlink", wid)
        is False
    )
    assert (
        lab.page.evaluate(
            "(id) => window.__kt.widget(id).node.querySelectorAll('.xterm-cursor-blink').length",
            wid,
        )
        == 0
    )
    cursor_bg = (
        "(id) => getComputedStyle(window.__kt.widget(id).node.querySelector('.xterm-cursor'))"
        ".backgroundColor"
    )
    lab.page.wait_for_function(off, arg=wid, timeout=ms(5))
    hidden = lab.page.evaluate(cursor_bg, wid)
    lab.page.wait_for_function(f"(id) => !({off})(id)", arg=wid, timeout=ms(5))
    shown = lab.page.evaluate(cursor_bg, wid)
    assert hidden != shown, "the cursor looks the same in both phases"
    lab.page.wait_for_function(off, arg=wid, timeout=ms(5))
    # A key typed during the "off" phase: the cursor shows with the echo.
    lab.page.evaluate(
        """(id) => {
            const w = window.__kt.widget(id);
            window.__offAtEcho = [];
            const d = w.terminal.onWriteParsed(() => {
                window.__offAtEcho.push(w.node.classList.contains('jp-mod-cursorOff'));
                d.dispose();
            });
        }""",
        wid,
    )
    lab.page.keyboard.press("x")
    lab.page.wait_for_function("() => window.__offAtEcho.length === 1", timeout=ms(10))
    assert lab.page.evaluate("() => window.__offAtEcho") == [False]
    lab.page.keyboard.press("Backspace")
    # Focus elsewhere: the timer stops and the cursor is left in its "on" state.
    lab.page.evaluate("() => document.activeElement.blur()")
    lab.page.wait_for_function(
        "(id) => !window.__kt.widget(id)._cursorBlink.isBlinking", arg=wid, timeout=ms(5)
    )
    assert not lab.page.evaluate(off, wid)


def test_resize_follows_panel(lab):
    wid = lab.open_terminal()
    lab.wait_prompt(wid)

    def term_size() -> tuple[int, int]:
        rows, cols = lab.page.evaluate(
            "(id) => { const t = window.__kt.widget(id).terminal; return [t.rows, t.cols]; }", wid
        )
        return rows, cols

    def stty_matches(tag: str) -> None:
        rows, cols = term_size()
        lab.type(wid, f"echo {tag}=$(stty size | tr ' ' x)\n")
        lab.wait_for_text(wid, f"{tag}={rows}x{cols}", timeout=20)

    stty_matches("before")
    before = term_size()
    lab.page.set_viewport_size({"width": 800, "height": 500})
    lab.page.wait_for_function(
        "([id, r, c]) => { const t = window.__kt.widget(id).terminal;"
        " return t.rows !== r && t.cols !== c; }",
        arg=[wid, *before],
        timeout=ms(20),
    )
    after = term_size()
    assert after[0] < before[0] and after[1] < before[1]
    stty_matches("after")


def test_busy_notebook_does_not_block_terminal(lab):
    nb = new_notebook(lab, "import time\ntime.sleep(60)")
    lab.page.wait_for_function(
        "(id) => window.__kt.widget(id).sessionContext.session.kernel.status === 'busy'",
        arg=nb["id"],
        timeout=ms(30),
    )
    # The notebook toolbar button opens a terminal on the notebook's kernel.
    lab.page.click(f"#{nb['id']} .jp-KernelTerminal-toolbarButton")
    lab.page.wait_for_function("() => window.__kt.terminals().length === 1", timeout=ms(20))
    wid = lab.page.evaluate("() => window.__kt.terminals()[0].id")
    kernel_id = lab.page.evaluate("(id) => window.__kt.widget(id).kernelId", wid)
    assert kernel_id == nb["kernelId"]
    lab.page.evaluate("(id) => window.__kt.widget(id).ready", wid)
    lab.wait_prompt(wid, timeout=10)
    t0 = time.monotonic()
    lab.run(wid, "echo busy-$((1+1))-ok", "busy-2-ok", timeout=10)
    elapsed = time.monotonic() - t0
    # (The kernel's status is no guide here: the subshell's own busy/idle
    # messages flip it while the main shell still sleeps.)
    assert lab.page.evaluate("() => window.__cellDone") is False, "the cell should still sleep"
    assert elapsed < 10
    lab.screenshot("kernel-terminal-notebook.png")
    lab.page.evaluate(
        "(id) => window.__kt.widget(id).sessionContext.session.kernel.interrupt()", nb["id"]
    )


def test_flood_stays_responsive(lab):
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    lab.type(wid, "seq 1 2000000; echo flood-$((1+1))-done\n")
    worst = 0.0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        done = lab.page.evaluate(
            "(id) => window.__kt.lines(id).some(l => l.trim() === 'flood-2-done')", wid
        )
        worst = max(worst, time.monotonic() - t0)
        if done:
            break
        lab.page.wait_for_timeout(200)  # sampling interval of the responsiveness probe
    else:
        pytest.fail("seq 1 2000000 did not finish in 240 s:\n" + lab.text(wid)[-2000:])
    lines = [line.strip() for line in lab.lines(wid)]
    i = lines.index("flood-2-done")
    assert lines[i - 1] == "2000000"
    assert worst < 2.0, f"the page stalled for {worst:.2f} s during the flood"
    print(f"\nflood: slowest page evaluate during seq 1 2000000: {worst * 1000:.0f} ms")


def kernel_process(kernel_id: str) -> psutil.Process:
    """The kernel's process, found by its connection file's name."""
    for proc in psutil.process_iter(["cmdline"]):
        if any(kernel_id in arg for arg in proc.info["cmdline"] or []):
            return proc
    raise AssertionError(f"no process for kernel {kernel_id}")


def flood(lab, rss_of, last_lines: str, nbytes: int, timeout: float) -> dict[str, Any]:
    """Type ``yes … | head -c nbytes`` into the focused terminal; sample the page's
    responsiveness and a server-side RSS until the end marker shows."""
    marker = f"flood-{nbytes}-done"
    rss0 = peak = rss_of()
    worst = 0.0
    t0 = time.monotonic()
    lab.page.keyboard.type(
        f"yes abcdefghijklmnopqrstuvwxyz | head -c {nbytes}; echo; echo {marker}"
    )
    lab.page.keyboard.press("Enter")
    done = False
    while not done and time.monotonic() - t0 < scaled(timeout):
        lab.page.wait_for_timeout(200)  # sampling interval of the probes
        t1 = time.monotonic()
        done = marker in [line.strip() for line in lab.page.evaluate(last_lines)]
        worst = max(worst, time.monotonic() - t1)
        peak = max(peak, rss_of())
    elapsed = time.monotonic() - t0
    return {
        "finished": done,
        "seconds": round(elapsed, 1),
        "MBps": round(nbytes / 1e6 / elapsed, 1) if done else None,
        "rss_growth_MB": round((peak - rss0) / 1e6, 1),
        "slowest_page_evaluate_ms": round(worst * 1000),
    }


@pytest.mark.timeout(1200)
def test_gigabyte_flood_keeps_page_and_kernel_bounded(lab):
    """1 GB of output: the page stays responsive, the kernel's memory flat (flow control
    with xterm's write callback). JupyterLab's own terminal gets 200 MB, for comparison."""
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    lab.focus(wid)
    kernel = kernel_process(lab.page.evaluate("(id) => window.__kt.widget(id).kernelId", wid))
    tail = f"() => window.__kt.lines({json.dumps(wid)}).slice(-{FLOOD_TAIL_LINES})"
    ours = flood(lab, lambda: kernel.memory_info().rss, tail, 1_000_000_000, timeout=600)
    assert ours["finished"], ours
    assert ours["rss_growth_MB"] < 100, ours
    # The page answers within 2 s on a quiet machine (about 0.2 s measured); a loaded one
    # stretches it like every other deadline (CODEX_EXEC_TEST_TIMEOUT_SCALE).
    assert ours["slowest_page_evaluate_ms"] < scaled(2000), ours
    lab.run(wid, "echo after-$((6*7))", "after-42")
    open_jupyterlab_terminal(lab)
    server = psutil.Process(lab.server.proc.pid)
    stock_tail = (
        "() => { const b = window.__stockTerm.content._term.buffer.active; const out = [];"
        f" for (let i = Math.max(0, b.length - {FLOOD_TAIL_LINES}); i < b.length; i++)"
        " out.push(b.getLine(i).translateToString(true)); return out; }"
    )
    stock = flood(lab, lambda: server.memory_info().rss, stock_tail, 200_000_000, timeout=300)
    lab.page.evaluate("() => window.__stockTerm.content.session.shutdown()")
    result = {
        "what": "yes | head -c N into a terminal panel until the end marker shows in xterm; "
        "RSS growth of the process holding the output (our kernel / jupyter_server "
        "for terminado); the slowest JS evaluate in the page meanwhile (sampled every 200 ms)",
        "kernel_terminal_1GB": ours,
        "jupyterlab_terminal_200MB": stock,
        "ratio_MBps_ours_vs_jupyterlab_terminal": (
            round(ours["MBps"] / stock["MBps"], 2) if stock["MBps"] else None
        ),
        "browser": "headless Debian chromium",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "browser-flood.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nflood: ours 1 GB {ours}; JupyterLab terminal 200 MB {stock}")


def test_reload_reattaches_same_shell(lab):
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    mark = f"kt-{uuid.uuid4().hex[:6]}"
    lab.type(wid, f"export KT_MARK={mark}; echo pid-$$-end\n")
    lab.page.wait_for_function(
        "(id) => window.__kt.lines(id).some(l => /^pid-\\d+-end$/.test(l.trim()))", arg=wid
    )
    pid = re.findall(r"^pid-(\d+)-end\s*$", lab.text(wid), re.M)[-1]
    process_id = lab.page.evaluate("(id) => window.__kt.widget(id).processId", wid)
    wait_saved(lab, process_id)
    lab.goto(reset=False)
    wid2 = lab.only_terminal()
    assert lab.page.evaluate("(id) => window.__kt.widget(id).processId", wid2) == process_id
    # The screen is repainted from the kernel's retained output...
    lab.wait_for_text(wid2, f"pid-{pid}-end", timeout=20)
    # ...and the shell is the same one, with its state.
    lab.run(wid2, "echo mark=$KT_MARK pid=$$", f"mark={mark} pid={pid}")


def test_sidebar_attaches_background_session(lab, lab_server):
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    kernel_id = lab.page.evaluate("(id) => window.__kt.widget(id).kernelId", wid)
    session_id = f"kt-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        [
            CODEX_EXEC, "session", "create",
            "--id", session_id, "--tty", "--",
            "bash", "-c", "echo bg-$((20+1))-hello; exec sleep 600",
        ],
        env=lab_server.env, cwd=ROOT, check=True, timeout=scaled(60),
    )  # fmt: skip
    lab.execute("codex-exec:show-processes", {"kernelId": kernel_id})
    row = lab.page.locator(f".jp-KernelProcesses-row[data-session-id='{session_id}']")
    row.wait_for(timeout=ms(20))
    assert "running" in row.inner_text()
    # The kernel's own process (the first terminal's shell) is listed too.
    pid = lab.page.evaluate("(id) => window.__kt.widget(id).processId", wid)
    lab.page.locator(f".jp-KernelProcesses-row[data-process-id='{pid}']").wait_for(timeout=ms(20))
    lab.page.locator("#codex-exec-sessions").screenshot(
        path=str(IMG_DIR / "kernel-processes-sidebar.png")
    )
    row.locator("button[data-action='attach']").click()
    lab.page.wait_for_function("() => window.__kt.terminals().length === 2", timeout=ms(20))
    wid2 = lab.page.evaluate("() => window.__kt.terminals().find(w => w.state.sessionId).id")
    lab.page.evaluate("(id) => window.__kt.widget(id).ready", wid2)
    lab.wait_for_text(wid2, "bg-21-hello", timeout=20)
    # Signal it from the sidebar: the row then says how it ended.
    row.locator(".jp-KernelProcesses-signal").select_option("terminate")
    row.locator(".jp-KernelProcesses-status", has_text="killed (SIGTERM)").wait_for(timeout=ms(20))
    lab.page.once("dialog", lambda d: d.accept())
    row.locator("button[data-action='delete']").click()
    row.wait_for(state="detached", timeout=ms(20))


def test_terminal_mime_bundle_opens_panel(lab):
    request = uuid.uuid4().hex
    nb = new_notebook(
        lab,
        "from IPython.display import display\n"
        "display({'application/vnd.codex-exec.terminal+json': "
        f"{{'requestId': '{request}'}}, 'text/plain': 'Kernel Terminal'}}, raw=True)",
    )
    lab.page.wait_for_function("() => window.__kt.terminals().length === 1", timeout=ms(30))
    wid = lab.page.evaluate("() => window.__kt.terminals()[0].id")
    assert lab.page.evaluate("(id) => window.__kt.widget(id).kernelId", wid) == nb["kernelId"]
    lab.page.evaluate("(id) => window.__kt.widget(id).ready", wid)
    lab.run(wid, "echo mime-$((3*3))", "mime-9")
    assert lab.page.locator(".jp-KernelTerminalRequest-button").count() == 1


def test_plain_ipykernel_loads_extension(lab):
    """A python3 kernel with the package installed gets %load_ext codex_exec_kernel."""
    kernel_id = lab.page.evaluate(
        """async () => {
            const k = await window.jupyterapp.serviceManager.kernels.startNew({name: 'python3'});
            await k.info;
            const id = k.id;
            k.dispose();
            return id;
        }"""
    )
    wid = lab.open_terminal({"kernelId": kernel_id})
    lab.wait_prompt(wid)
    lab.run(wid, "echo plain-$((5*5))", "plain-25")
