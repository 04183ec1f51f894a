"""Real JupyterLab in headless Chromium, driven with Python playwright.

Fixtures start ``jupyter lab`` on a free loopback port with private config,
runtime, settings and workspace dirs (nothing leaks from the user's Jupyter
setup), with the ``codex-exec`` kernelspec installed in the venv's sys-prefix
and this checkout's labextension build first on the extension path. Chromium
is Debian's ``/usr/bin/chromium`` (``apt-get install -y chromium``); the tests
skip, saying so, only when it is not there (and fail instead in CI).

Helpers read the terminal through xterm's buffer API
(``term.buffer.active.getLine(n).translateToString(true)``), which does not
depend on the renderer, and wait on page events with timeouts, never on
fixed sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import scaled, wait_http

ROOT = Path(__file__).resolve().parents[2]
LABEXT_BUILD = ROOT / "codex_exec_kernel" / "labextension"
LABEXT_NAME = "codex-exec-kernel"
KERNEL_NAME = "codex-exec"
CHROMIUM = os.environ.get("CODEX_EXEC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BIN = Path(sys.executable).parent
#: Screenshots and browser figures go to an ignored directory of the checkout, so a test
#: run leaves ``git status`` clean; ``make docs-images`` / ``make bench`` point these
#: variables at ``docs/img`` and ``benchmarks/results`` to refresh the tracked copies.
ARTIFACTS = ROOT / "build" / "test-artifacts"
IMG_DIR = Path(os.environ.get("CODEX_EXEC_DOCS_IMG_DIR") or ARTIFACTS / "img")
RESULTS_DIR = Path(os.environ.get("CODEX_EXEC_RESULTS_DIR") or ARTIFACTS / "results")


def ms(seconds: float) -> float:
    """A Playwright timeout (milliseconds) for a deadline of ``seconds``, scaled."""
    return scaled(seconds) * 1000


def wait_saved(lab: Any, process_id: str) -> None:
    """Until the server's workspace holds the panel (the restorer saves asynchronously)."""
    saved = lab.page.evaluate(
        """async ([pid, timeout]) => {
            const deadline = Date.now() + timeout;
            while (Date.now() < deadline) {
              const r = await fetch('/lab/api/workspaces');
              const text = JSON.stringify(await r.json());
              if (text.includes(pid) && text.includes('codex-exec-terminal:')) return true;
              await new Promise(res => setTimeout(res, 200));
            }
            return false;
        }""",
        [process_id, ms(20)],
    )
    assert saved, "the workspace never recorded the terminal"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(scaled(15))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(scaled(5))


# ----------------------------------------------------------------------------- environment


def _kernelspecs(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [str(BIN / "jupyter"), "kernelspec", "list", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)["kernelspecs"]


def ensure_kernelspec(env: dict[str, str]) -> None:
    """``codex-exec`` in sys-prefix (``python -m codex_exec_kernel install --sys-prefix``)."""
    if KERNEL_NAME in _kernelspecs(env):
        return
    subprocess.run(
        [sys.executable, "-m", "codex_exec_kernel", "install", "--sys-prefix"],
        env=env, check=True, cwd=ROOT,
    )  # fmt: skip
    assert KERNEL_NAME in _kernelspecs(env), "kernelspec install did not register codex-exec"


def ensure_labextension_built() -> None:
    """Build ``labextension/`` into ``codex_exec_kernel/labextension`` when missing."""
    if (LABEXT_BUILD / "package.json").exists() and (LABEXT_BUILD / "static").exists():
        return
    jlpm = str(BIN / "jlpm")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run([jlpm, "install"], cwd=ROOT / "labextension", env=env, check=True)
    subprocess.run([jlpm, "build"], cwd=ROOT / "labextension", env=env, check=True)


def _unavailable(reason: str) -> None:
    """Skip on a developer's machine without a browser; in CI (`CI` set), fail instead:
    `make test` installs Chromium, so a missing browser there is a broken setup."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        _unavailable(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("python playwright is not installed")
    return CHROMIUM


@pytest.fixture(scope="session")
def jupyter_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Private Jupyter dirs; this checkout's labextension build first on the path."""
    base = tmp_path_factory.mktemp("jupyter")
    data = base / "data"
    (data / "labextensions").mkdir(parents=True)
    ensure_labextension_built()
    (data / "labextensions" / LABEXT_NAME).symlink_to(LABEXT_BUILD, target_is_directory=True)
    config = base / "config"
    config.mkdir()
    # The server extension is enabled by the package's jupyter_server_config.d file
    # once installed; say it here too so a plain checkout tests it.
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"codex_exec_kernel.serverext": True}}})
    )
    # No news / update toasts over the panels in screenshots.
    notification = base / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    extra = os.environ.get("CODEX_EXEC_TEST_JUPYTER_PATH", "")
    env = {
        **os.environ,
        "JUPYTER_PATH": os.pathsep.join(p for p in [str(data), extra] if p),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "CODEX_EXEC_HOME": str(base / "codex-exec-home"),
        "PYTHONPATH": os.pathsep.join(
            p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p
        ),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SHELL": "/bin/bash",
    }
    env.pop("JUPYTER_DATA_DIR", None)
    ensure_kernelspec(env)
    write_kernelspec_without_package(data / "kernels" / NO_PACKAGE_KERNEL)
    write_kernelspec_with_shadowed_package(data / "kernels" / SHADOWED_PACKAGE_KERNEL)
    return env


#: A plain ipykernel that cannot import codex_exec_kernel, as when the package is
#: missing from the kernel's environment.
NO_PACKAGE_KERNEL = "python-no-codex"
#: A plain ipykernel where another module named codex_exec_kernel (not an IPython
#: extension) comes first on the path.
SHADOWED_PACKAGE_KERNEL = "python-shadowed-codex"


def write_kernelspec_without_package(where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    (where / "launch.py").write_text(
        "import sys\n\n\n"
        "class HidePackage:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'codex_exec_kernel':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n\n\n"
        "sys.meta_path.insert(0, HidePackage())\n"
        "from ipykernel.kernelapp import launch_new_instance\n\n"
        "launch_new_instance()\n"
    )
    spec = {
        "argv": [sys.executable, str(where / "launch.py"), "-f", "{connection_file}"],
        "display_name": "Python (without codex-exec-kernel)",
        "language": "python",
    }
    (where / "kernel.json").write_text(json.dumps(spec))


def write_kernelspec_with_shadowed_package(where: Path) -> None:
    shadow = where / "shadow" / "codex_exec_kernel"
    shadow.mkdir(parents=True, exist_ok=True)
    (shadow / "__init__.py").write_text('"""Not the extension."""\n')
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (another codex_exec_kernel first on the path)",
        "language": "python",
        "env": {"PYTHONPATH": str(where / "shadow")},
    }
    (where / "kernel.json").write_text(json.dumps(spec))


class LabServer:
    def __init__(self, url: str, proc: subprocess.Popen, root: Path, env: dict[str, str]):
        self.url = url
        self.proc = proc
        self.root = root
        self.env = env


def start_lab(env: dict[str, str], root: Path, log: Path, extra: list[str] = ()) -> LabServer:
    port = free_port()
    cmd = [
        str(BIN / "jupyter"), "lab",
        "--allow-root",
        "--no-browser",
        "--ServerApp.open_browser=False",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--ServerApp.root_dir={root}",
        *extra,
    ]  # fmt: skip
    out = log.open("w")
    proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url + "api/status", proc, log)
    except Exception:
        stop(proc)
        raise
    return LabServer(url, proc, root, env)


@pytest.fixture(scope="session")
def lab_server(
    jupyter_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabServer]:
    root = tmp_path_factory.mktemp("lab-root")
    log = root.parent / "lab-server.log"
    server = start_lab(jupyter_env, root, log)
    yield server
    stop(server.proc)


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


# ----------------------------------------------------------------------------- the page

#: In-page helpers, installed before JupyterLab's code runs.
PAGE_HELPERS = r"""
window.__kt = {
  widget(id) {
    for (const w of window.jupyterapp.shell.widgets('main')) {
      if (w.id === id) return w;
    }
    return null;
  },
  terminals() {
    const out = [];
    for (const w of window.jupyterapp.shell.widgets('main')) {
      if (w.hasClass && w.hasClass('jp-KernelTerminal')) out.push(w);
    }
    return out;
  },
  lines(id) {
    const w = this.widget(id);
    if (!w) return [];
    const buf = w.terminal.buffer.active;
    const out = [];
    for (let i = 0; i < buf.length; i++) {
      const line = buf.getLine(i);
      out.push(line ? line.translateToString(true) : '');
    }
    return out;
  },
  text(id) { return this.lines(id).join('\n'); },
};
"""


class Lab:
    """One JupyterLab page plus helpers for Kernel Terminal panels."""

    def __init__(self, page: Any, server: LabServer):
        self.page = page
        self.server = server

    def goto(self, reset: bool = True) -> None:
        self.page.goto(self.server.url + ("lab?reset" if reset else "lab"))
        self.wait_restored()

    def wait_restored(self) -> None:
        self.page.wait_for_function("() => !!(window.jupyterapp)", timeout=ms(60))
        self.page.evaluate("() => window.jupyterapp.restored.then(() => true)")

    def execute(self, command: str, args: dict | None = None) -> Any:
        return self.page.evaluate(
            "([c, a]) => window.jupyterapp.commands.execute(c, a).then(() => true)",
            [command, args or {}],
        )

    def only_terminal(self, timeout: float = 30) -> str:
        """The widget id of the page's one Kernel Terminal (e.g. restored by a reload),
        once it is ready."""
        self.page.wait_for_function(
            "() => window.__kt.terminals().length === 1", timeout=ms(timeout)
        )
        wid = self.page.evaluate("() => window.__kt.terminals()[0].id")
        self.page.evaluate("(id) => window.__kt.widget(id).ready", wid)
        return wid

    def open_terminal(self, args: dict | None = None, timeout: float = 60) -> str:
        """Open a Kernel Terminal panel, wait until its shell runs; return its widget id."""
        return self.page.evaluate(
            """async ([args, timeout]) => {
                const w = await window.jupyterapp.commands.execute(
                    'codex-exec:open-terminal', args);
                await Promise.race([
                  w.ready,
                  new Promise((_, rej) => setTimeout(
                      () => rej(new Error('terminal not ready: ' + w.node.dataset.error)),
                      timeout * 1000)),
                ]);
                return w.id;
            }""",
            [args or {}, scaled(timeout)],
        )

    def wait_prompt(self, wid: str, timeout: float = 30) -> None:
        """Wait until the shell printed its prompt (a line ending in `$ ` or `# `)."""
        self.page.wait_for_function(
            """(id) => window.__kt.lines(id).some(l => /[$#%>] ?$/.test(l.trimEnd() + ' '))""",
            arg=wid, timeout=ms(timeout), polling=100,
        )  # fmt: skip

    def lines(self, wid: str) -> list[str]:
        return self.page.evaluate("(id) => window.__kt.lines(id)", wid)

    def text(self, wid: str) -> str:
        return "\n".join(self.lines(wid))

    def focus(self, wid: str) -> None:
        self.page.evaluate(
            "(id) => { window.jupyterapp.shell.activateById(id);"
            " window.__kt.widget(id).terminal.focus(); }",
            wid,
        )

    def type(self, wid: str, text: str) -> None:
        """Type with real key events into the focused terminal; `\\n` presses Enter."""
        self.focus(wid)
        for i, part in enumerate(text.split("\n")):
            if i:
                self.page.keyboard.press("Enter")
            if part:
                self.page.keyboard.type(part)

    def wait_for_text(self, wid: str, needle: str, timeout: float = 30, last: bool = False) -> str:
        """Wait until a line of the terminal equals/contains ``needle``; return the text."""
        try:
            self.page.wait_for_function(
                """([id, needle, exact]) => {
                    const lines = window.__kt.lines(id);
                    return exact ? lines.some(l => l.trim() === needle)
                                 : lines.join('\\n').includes(needle);
                }""",
                arg=[wid, needle, last],
                timeout=ms(timeout),
                polling=100,
            )
        except Exception as exc:
            raise AssertionError(
                f"{needle!r} not shown within {scaled(timeout):g} s; the terminal shows:\n"
                + self.text(wid)[-3000:]
            ) from exc
        return self.text(wid)

    def run(self, wid: str, command: str, marker: str, timeout: float = 30) -> str:
        """Type ``command`` and wait for a line that is exactly ``marker``."""
        self.type(wid, command + "\n")
        return self.wait_for_text(wid, marker, timeout=timeout, last=True)

    def screenshot(self, name: str, wid: str | None = None) -> Path:
        IMG_DIR.mkdir(parents=True, exist_ok=True)
        path = IMG_DIR / name
        if wid:
            self.page.locator(f"#{wid}").screenshot(path=str(path))
        else:
            self.page.screenshot(path=str(path))
        return path


def new_lab(browser: Any, server: LabServer, viewport=(1100, 700)) -> tuple[Any, Lab]:
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    context.add_init_script(PAGE_HELPERS)
    page = context.new_page()
    page.set_default_timeout(ms(60))
    lab = Lab(page, server)
    lab.goto(reset=True)
    return context, lab


@pytest.fixture
def lab(browser: Any, lab_server: LabServer) -> Iterator[Lab]:
    context, lab = new_lab(browser, lab_server)
    yield lab
    context.close()


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kt-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def new_notebook(lab, code: str | None = None, kernel: str = "codex-exec") -> dict:
    """Create a notebook on ``kernel``; optionally run ``code`` in its first cell."""
    return lab.page.evaluate(
        """async ([kernelName, code, timeoutMs]) => {
            const app = window.jupyterapp;
            const panel = await app.commands.execute('notebook:create-new', {kernelName});
            await panel.context.ready;
            await panel.sessionContext.ready;
            const deadline = Date.now() + timeoutMs;
            while (!panel.sessionContext.session?.kernel && Date.now() < deadline) {
              await new Promise(r => panel.sessionContext.kernelChanged.connect(r));
            }
            const kernel = panel.sessionContext.session.kernel;
            await kernel.info;
            if (code !== null) {
              panel.content.activeCell.model.sharedModel.setSource(code);
              app.shell.activateById(panel.id);
              // Not awaited: run-cell resolves only when the cell finishes.
              window.__cellDone = false;
              app.commands.execute('notebook:run-cell').then(() => { window.__cellDone = true; });
            }
            return {id: panel.id, kernelId: kernel.id, kernelName: kernel.name};
        }""",
        [kernel, code, ms(60)],
    )
