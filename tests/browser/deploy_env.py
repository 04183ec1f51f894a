"""The world of the deployment tests: venvs, Unix users, sshd, Enterprise Gateway, JupyterHub.

Everything here is installed and started for real (see docs/deploy.md for the same
steps written for an admin). What takes time to build is cached across runs under
``.cache/deploy/`` in the checkout (gitignored):

* venvs made from Debian's ``/usr/bin/python3`` (a venv whose python points into
  root's home cannot run as another user), keyed by a hash of ``pyproject.toml`` and
  the requirement lists below; the product is reinstalled into them from a wheel of
  this checkout whenever its sources change;
* Enterprise Gateway's ``launch_ipykernel.py`` from the gateway's sdist (PyPI);
* configurable-http-proxy from npm.

Users are created per test session with unique names and removed afterwards, with
every process they own. Only root can do this; elsewhere the fixtures skip, saying why.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import RESULTS_DIR, ensure_labextension_built

ROOT = Path(__file__).resolve().parents[2]


def default_cache() -> Path:
    """``.cache/deploy`` in the checkout when other users can reach it (the venvs run as
    them), else a system cache dir (a checkout under /root, say)."""
    reachable = all(d.stat().st_mode & 0o001 for d in [ROOT, *ROOT.parents])
    return ROOT / ".cache" / "deploy" if reachable else Path("/var/cache/codex-exec-tests")


CACHE = Path(os.environ.get("CODEX_EXEC_DEPLOY_CACHE") or default_cache())
SYSTEM_PYTHON = "/usr/bin/python3"
DEV_BIN = Path(sys.executable).parent

EG_VERSION = "3.3.0"
#: Requirements of each venv (the product's own come from its wheel).
VENVS: dict[str, list[str]] = {
    "eg": [f"jupyter-enterprise-gateway=={EG_VERSION}"],
    "kernel": ["PRODUCT[enterprise-gateway]"],
    "hub": ["PRODUCT[lab]", "jupyterhub>=5"],
}
CHP_PACKAGE = "configurable-http-proxy@^5"


def unavailable(reason: str) -> None:
    """Skip with a one-line reason; in CI (``CI`` set) fail instead: CI runs as root."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a setup command; on failure, raise with its output (not just the exit code)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """One builder of the cache at a time (parallel test runs share it)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    os.chmod(CACHE, 0o755)
    if CACHE.parent.parent == ROOT:
        CACHE.parent.chmod(0o755)  # .cache: other users reach the venvs
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:12]


def source_key() -> str:
    """Changes whenever a file that goes into the wheel changes."""
    parts = [(ROOT / "pyproject.toml").read_bytes()]
    for path in sorted((ROOT / "codex_exec_kernel").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            st = path.stat()
            parts.append(f"{path.relative_to(ROOT)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return _digest(*parts)


def product_wheel() -> Path:
    """A wheel of this checkout (labextension included), built once per source state."""
    ensure_labextension_built()
    out = CACHE / "wheels" / source_key()
    wheels = list(out.glob("*.whl")) if out.exists() else []
    if not wheels:
        shutil.rmtree(CACHE / "wheels", ignore_errors=True)
        out.mkdir(parents=True)
        run([str(DEV_BIN / "python"), "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
             str(ROOT)], cwd=ROOT)  # fmt: skip
        wheels = list(out.glob("*.whl"))
    return wheels[0]


def venv(name: str) -> Path:
    """The cached venv ``name`` (see VENVS), with the current product if it has one."""
    requirements = VENVS[name]
    key = _digest((ROOT / "pyproject.toml").read_bytes(), json.dumps(requirements).encode(),
                  Path(SYSTEM_PYTHON).resolve().name.encode())  # fmt: skip
    path = CACHE / f"{name}-{key}"
    with cache_lock():
        wants_product = any(r.startswith("PRODUCT") for r in requirements)
        wheel = product_wheel() if wants_product else None
        if not (path / ".complete").exists():
            shutil.rmtree(path, ignore_errors=True)
            run([SYSTEM_PYTHON, "-m", "venv", str(path)])
            reqs = [r.replace("PRODUCT", str(wheel)) for r in requirements]
            run([str(path / "bin" / "pip"), "install", "-q", *reqs])
            (path / ".product").write_text(str(wheel))
            (path / ".complete").write_text("")
        elif wheel and (path / ".product").read_text() != str(wheel):
            run([str(path / "bin" / "pip"), "install", "-q", "--no-deps", "--force-reinstall",
                 str(wheel)])  # fmt: skip
            (path / ".product").write_text(str(wheel))
        run(["chmod", "-R", "a+rX", str(path)])
    return path


def eg_launcher() -> Path:
    """Enterprise Gateway's ``launch_ipykernel.py``, from its sdist (not in its wheel)."""
    target = CACHE / f"eg-launchers-{EG_VERSION}" / "launch_ipykernel.py"
    with cache_lock():
        if not target.exists():
            sdist = CACHE / "eg-sdist"
            run([str(DEV_BIN / "python"), "-m", "pip", "download", "-q", "--no-deps",
                 "--no-binary", ":all:", f"jupyter-enterprise-gateway=={EG_VERSION}",
                 "-d", str(sdist)])  # fmt: skip
            archive = next(sdist.glob("*.tar.gz"))
            member = (f"jupyter_enterprise_gateway-{EG_VERSION}/etc/kernel-launchers/python/"
                      "scripts/launch_ipykernel.py")  # fmt: skip
            with tarfile.open(archive) as tar:
                data = tar.extractfile(member)
                assert data is not None
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data.read())
            target.parent.chmod(0o755)
            target.chmod(0o644)
            shutil.rmtree(sdist, ignore_errors=True)
    return target


def chp_command() -> Path:
    """configurable-http-proxy from npm, installed into the cache."""
    where = CACHE / "chp"
    binary = where / "node_modules" / ".bin" / "configurable-http-proxy"
    with cache_lock():
        if not binary.exists():
            if not shutil.which("npm"):
                unavailable("npm not found (needed for configurable-http-proxy)")
            where.mkdir(parents=True, exist_ok=True)
            run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix",
                 str(where), CHP_PACKAGE])  # fmt: skip
    return binary


# ----------------------------------------------------------------------------- users


def require_root() -> None:
    if os.geteuid() != 0:
        unavailable("needs root (creates Unix users, runs sshd and JupyterHub's spawner)")


@dataclass
class User:
    name: str
    uid: int
    home: Path

    def processes(self) -> list[psutil.Process]:
        out = []
        for proc in psutil.process_iter(["uids"]):
            with contextlib.suppress(psutil.Error):
                if proc.info["uids"] and proc.info["uids"].real == self.uid:
                    out.append(proc)
        return out

    def run(self, cmd: list[str], env: dict[str, str] | None = None,
            **kwargs) -> subprocess.CompletedProcess:  # fmt: skip
        """Run ``cmd`` as this user, with a login-like environment plus ``env``."""
        base = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
                "SHELL": "/bin/bash", "PATH": "/usr/local/bin:/usr/bin:/bin",
                "LANG": "C.UTF-8"}  # fmt: skip
        return subprocess.run(
            ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--init-groups", *cmd],
            env={**base, **(env or {})}, cwd=self.home, capture_output=True, text=True,
            **kwargs,
        )  # fmt: skip


@contextlib.contextmanager
def unix_user(prefix: str) -> Iterator[User]:
    """A fresh unprivileged user ``<prefix><random>`` with its own home; on exit every
    process it owns is killed (they are all ours: the user did not exist before) and
    the user and home are removed."""
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    run(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", name])
    entry = pwd.getpwnam(name)
    user = User(name, entry.pw_uid, Path(entry.pw_dir))
    try:
        yield user
    finally:
        for _ in range(50):
            procs = user.processes()
            if not procs:
                break
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(signal.SIGKILL)
            psutil.wait_procs(procs, timeout=2)
        subprocess.run(["userdel", "--remove", name], capture_output=True)
        # Files it left in /tmp (kernels' connection files, the shell's scratch files).
        for entry in Path(tempfile.gettempdir()).iterdir():
            with contextlib.suppress(OSError):
                if entry.lstat().st_uid == user.uid:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink()


# ----------------------------------------------------------------------------- sshd


@dataclass
class Sshd:
    port: int
    key: Path  # the client's private key (logs in as the remote user)
    known_hosts: Path
    proc: subprocess.Popen


@contextlib.contextmanager
def sshd_for(user: User, workdir: Path, port: int) -> Iterator[Sshd]:
    """Debian's sshd in the foreground on 127.0.0.1:``port``, accepting only ``user``'s key."""
    if not Path("/usr/sbin/sshd").exists():
        apt = subprocess.run(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
            "apt-get install -y -qq openssh-server", shell=True, capture_output=True, text=True,
        )  # fmt: skip
        if apt.returncode != 0 or not Path("/usr/sbin/sshd").exists():
            unavailable(f"openssh-server could not be installed: {apt.stderr.strip()[-200:]}")
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_key, key = workdir / "host_ed25519", workdir / "id_ed25519"
    for k in (host_key, key):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)])
    ssh_dir = user.home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    (ssh_dir / "authorized_keys").chmod(0o600)
    shutil.chown(ssh_dir, user.name, user.name)
    shutil.chown(ssh_dir / "authorized_keys", user.name, user.name)
    config = workdir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"PidFile {workdir / 'sshd.pid'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin no\n"
        f"AllowUsers {user.name}\nUsePAM yes\n"
    )
    run(["/usr/sbin/sshd", "-t", "-f", str(config)])
    log = workdir / "sshd.log"
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(log)])
    try:
        deadline = time.monotonic() + 20
        while True:
            scan = subprocess.run(["ssh-keyscan", "-p", str(port), "-t", "ed25519", "127.0.0.1"],
                                  capture_output=True, text=True)  # fmt: skip
            if scan.stdout.strip():
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text() if log.exists() else ""
                raise RuntimeError(f"sshd did not start:\n{text}")
            time.sleep(0.1)  # polling interval while sshd starts
        known_hosts = workdir / "known_hosts"
        known_hosts.write_text(scan.stdout)
        yield Sshd(port, key, known_hosts, proc)
    finally:
        proc.terminate()
        proc.wait(10)



# ----------------------------------------------------------------------------- the page

#: Run code on a kernel the page is connected to; resolves with the reply status and
#: everything the kernel printed or displayed as text.
EXECUTE_JS = """async ([kernelId, code, timeout]) => {
    // One connection per kernel and page, kept across calls (and kernel restarts).
    const conns = window.__deployConns = window.__deployConns || {};
    const kernel = conns[kernelId] = conns[kernelId] ||
        window.jupyterapp.serviceManager.kernels.connectTo({model: {id: kernelId, name: ''}});
    const expire = what => new Promise((_, reject) => setTimeout(
        () => reject(new Error(`${what}: no answer in ${timeout} s`)), timeout * 1000));
    await Promise.race([kernel.info, expire('kernel_info')]);
    const future = kernel.requestExecute({code, stop_on_error: true});
    let out = '';
    future.onIOPub = msg => {
      const c = msg.content;
      switch (msg.header.msg_type) {
        case 'stream': out += c.text; break;
        case 'execute_result': case 'display_data':
          out += (c.data['text/plain'] || '') + '\\n'; break;
        case 'error': out += c.ename + ': ' + c.evalue + '\\n'; break;
      }
    };
    const reply = await Promise.race([future.done, expire('execute')]);
    return {status: reply.content.status, out};
}"""


def restart_kernel(lab, kernel_id: str) -> None:
    """Restart through the page's connection, which then reconnects (a restart over
    REST alone would leave that connection on the old kernel's ports behind a gateway)."""
    lab.page.evaluate(
        "async (id) => { const conns = window.__deployConns || {};"
        " const k = conns[id] || window.jupyterapp.serviceManager.kernels.connectTo("
        "{model: {id, name: ''}}); conns[id] = k; await k.restart(); }",
        kernel_id,
    )


def execute(lab, kernel_id: str, code: str, timeout: float = 60) -> tuple[str, str]:
    """(reply status, text output) of ``code`` run on ``kernel_id`` from the page."""
    result = lab.page.evaluate(EXECUTE_JS, [kernel_id, code, timeout])
    return result["status"], result["out"]


#: POST to the server the page talks to (its XSRF cookie and token), JSON in and out.
POST_JS = """async ([path, body]) => {
    const settings = window.jupyterapp.serviceManager.serverSettings;
    const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1];
    const headers = {'Content-Type': 'application/json'};
    if (xsrf) headers['X-XSRFToken'] = decodeURIComponent(xsrf);
    if (settings.token) headers['Authorization'] = `token ${settings.token}`;
    const r = await fetch(settings.baseUrl + path, {method: 'POST', headers,
                          body: JSON.stringify(body), credentials: 'same-origin'});
    if (r.status >= 300) throw new Error(`POST ${path}: ${r.status} ${await r.text()}`);
    const text = await r.text();
    return text ? JSON.parse(text) : null;
}"""


def post(lab, path: str, body: dict | None = None) -> dict | None:
    return lab.page.evaluate(POST_JS, [path, body or {}])


def start_kernel(lab, name: str, timeout: float = 120) -> str:
    """Start a new kernel from the page and open a Kernel Terminal on it; return its id.

    The panel's connection is the kernel's first websocket: with Enterprise Gateway
    (jupyter_server 1.x) a first connection from a plain ``KernelConnection`` that
    starts with a shell ``kernel_info_request`` sometimes waits ~45 s in the gateway's
    "nudge"; the panel's (control channel first) does not."""
    kernel_id = post(lab, "api/kernels", {"name": name})["id"]
    wid = lab.open_terminal({"kernelId": kernel_id, "kernelName": name}, timeout=timeout)
    lab.wait_prompt(wid)
    return kernel_id


def terminal_kernel(lab, wid: str) -> str:
    return lab.page.evaluate("(id) => window.__kt.widget(id)._conn.kernel.id", wid)


def clear_screen(lab, wid: str, timeout: float = 30) -> None:
    """``clear``, and wait until the screen shows nothing but the new prompt (so a
    measurement that starts now starts from a settled cursor)."""
    lab.type(wid, "clear\n")
    lab.page.wait_for_function(
        """(id) => { const ls = window.__kt.lines(id).filter(l => l.trim());
                     return ls.length === 1 && /[$#] ?$/.test(ls[0].trimEnd() + ' '); }""",
        arg=wid, timeout=timeout * 1000, polling=100,
    )  # fmt: skip


def shell_value(lab, wid: str, expression: str, timeout: float = 30) -> str:
    """Have the panel's shell print ``expression`` (e.g. ``$$``, ``$(whoami)``) on a line
    of its own and return it (the typed command line itself does not match)."""
    marker = uuid.uuid4().hex[:8]
    lab.type(wid, f"echo {marker}={expression}={marker}\n")
    pattern = f"^{marker}=(.*)={marker}$"
    lab.page.wait_for_function(
        "([id, p]) => window.__kt.lines(id).some(l => new RegExp(p).test(l.trim()))",
        arg=[wid, pattern], timeout=timeout * 1000, polling=100,
    )  # fmt: skip
    for line in lab.lines(wid):
        match = re.match(pattern, line.strip())
        if match:
            return match.group(1)
    raise AssertionError(lab.text(wid))


def latency_then_reload(lab, wid: str, where: str, screenshot: str | None = None) -> dict:
    """Time 100 keystrokes' echo in panel ``wid`` (recorded as ``where``), then reload
    the page and check the panel shows the same shell again. ``wid`` shows a prompt."""
    from test_terminal import time_keystrokes

    pid = shell_value(lab, wid, "$$")
    clear_screen(lab, wid)
    lab.focus(wid)
    handle = lab.page.evaluate_handle("(id) => window.__kt.widget(id).terminal", wid)
    samples, frames = time_keystrokes(lab, handle, total=100)
    figures = record_latency(where, samples, frames)
    if screenshot is not None:
        lab.screenshot(screenshot, wid)

    lab.goto(reset=False)
    lab.page.wait_for_function(
        "(id) => !!window.__kt.widget(id) && !!window.__kt.widget(id).terminal", arg=wid,
        timeout=60000,
    )  # fmt: skip
    lab.page.evaluate("(id) => window.__kt.widget(id).ready", wid)
    assert shell_value(lab, wid, "$$") == pid, "the reloaded panel shows the same shell"
    return figures


def record_latency(where: str, samples: list[float], frames: list[float]) -> dict:
    """Print the figures and keep them next to the other browser results."""
    from test_terminal import percentile

    figures = {
        "where": where,
        "keys": len(samples),
        "parsed_ms": {"p50": round(percentile(samples, 50), 2),
                      "p95": round(percentile(samples, 95), 2)},
        "frame_ms": {"p50": round(percentile(frames, 50), 2),
                     "p95": round(percentile(frames, 95), 2)},
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    print(f"\nkeystroke echo through {where}: {json.dumps(figures)}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"deploy-latency-{where}.json").write_text(json.dumps(figures) + "\n")
    return figures
