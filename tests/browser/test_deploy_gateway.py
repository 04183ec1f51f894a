"""Kernels on another host: Jupyter Enterprise Gateway's DistributedProcessProxy.

The gateway runs as root with its own HOME and starts kernels over SSH (sshd on
127.0.0.1, a port of its own) as a second, unprivileged user with its own HOME and a
venv holding this product. JupyterLab runs as root with ``--gateway-url``. The
kernelspec is the one ``codex-exec install --enterprise-gateway`` writes.

What the browser must see: the Kernel Terminal's shell is the remote user's; ``%exec``,
``%exec --bg`` and ``%sessions`` work there; a background session survives the remote
kernel's restart and its SIGKILL, and a new kernel on that host lists and attaches it;
a page reload re-attaches the panel. Keystroke echo through the gateway is measured.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import LabServer, free_port, new_lab, start_lab, stop, wait_http
from deploy_env import (
    User,
    eg_launcher,
    execute,
    latency_then_reload,
    require_root,
    restart_kernel,
    run,
    shell_value,
    sshd_for,
    start_kernel,
    terminal_kernel,
    unix_user,
    venv,
)
from waiting import wait_until

pytestmark = pytest.mark.browser

SPEC = "codex-exec"

#: Enterprise Gateway treats 127.0.0.1 as "this host" and then starts the kernel as its
#: own local child, without SSH. This proxy makes every host remote, so the kernel goes
#: through sshd like on a real cluster (EG calls the check as a static method of the
#: base class, so the patch must be there).
LOOPBACK_PROXY = '''\
from enterprise_gateway.services.processproxies.distributed import DistributedProcessProxy
from enterprise_gateway.services.processproxies.processproxy import BaseProcessProxyABC

BaseProcessProxyABC.ip_is_local = staticmethod(lambda ip: False)


class LoopbackSSHProcessProxy(DistributedProcessProxy):
    """DistributedProcessProxy that uses SSH even for 127.0.0.1."""
'''

#: Enterprise Gateway's config file (docs/deploy.md): tornado leaves Nagle on for the
#: websockets it accepts, and the gateway relays each keystroke's echo as a small frame
#: to the lab server, which then waits on its delayed ACK. Switch it off.
EG_CONFIG = """\
from tornado.websocket import WebSocketProtocol13

_start_pinging = WebSocketProtocol13.start_pinging


def _start_pinging_nodelay(self):
    self.stream.set_nodelay(True)  # called once the websocket's stream is its own
    _start_pinging(self)


WebSocketProtocol13.start_pinging = _start_pinging_nodelay
"""


@dataclass
class Gateway:
    url: str
    proc: subprocess.Popen
    user: User
    log: Path


@pytest.fixture(scope="module")
def remote_user() -> Iterator[User]:
    require_root()
    with unix_user("cxr") as user:
        yield user


@pytest.fixture(scope="module")
def gateway(remote_user: User, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    kernel_venv, eg_venv, launcher = venv("kernel"), venv("eg"), eg_launcher()
    work = tmp_path_factory.mktemp("enterprise-gateway")
    with sshd_for(remote_user, work / "sshd", free_port()) as sshd:
        # The gateway's own HOME: paramiko finds the key and known_hosts there.
        home = work / "home"
        (home / ".ssh").mkdir(parents=True, mode=0o700)
        (home / ".ssh" / "id_ed25519").write_bytes(sshd.key.read_bytes())
        (home / ".ssh" / "id_ed25519").chmod(0o600)
        (home / ".ssh" / "known_hosts").write_text(sshd.known_hosts.read_text())
        (work / "config").mkdir()
        (work / "config" / "jupyter_enterprise_gateway_config.py").write_text(EG_CONFIG)
        pypath = work / "py"
        pypath.mkdir()
        (pypath / "loopback_ssh_pp.py").write_text(LOOPBACK_PROXY)
        # The admin's step, as docs/deploy.md gives it.
        run([str(kernel_venv / "bin" / "codex-exec"), "install", "--enterprise-gateway",
             "--prefix", str(work / "prefix"), "--name", SPEC,
             "--display-name", "Python 3 (codex-exec, remote)",
             "--process-proxy", "loopback_ssh_pp.LoopbackSSHProcessProxy",
             "--kernel-python", str(kernel_venv / "bin" / "python"),
             "--launcher", str(launcher), "--ip", "127.0.0.1"])  # fmt: skip
        logs = remote_user.run(["mkdir", "-p", str(remote_user.home / "eg-logs")])
        assert logs.returncode == 0, logs.stderr
        port = free_port()
        env = {
            "PATH": os.environ["PATH"],
            "LANG": "C.UTF-8",
            "HOME": str(home),
            "JUPYTER_PATH": str(work / "prefix" / "share" / "jupyter"),
            "JUPYTER_CONFIG_DIR": str(work / "config"),
            "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
            "JUPYTER_DATA_DIR": str(work / "data"),
            "PYTHONPATH": str(pypath),
            "EG_SSH_PORT": str(sshd.port),
            "EG_REMOTE_USER": remote_user.name,
            "EG_RESPONSE_IP": "127.0.0.1",
            "EG_RESPONSE_PORT": str(free_port()),
            "EG_KERNEL_LOG_DIR": str(remote_user.home / "eg-logs"),
        }
        log = work / "gateway.log"
        proc = subprocess.Popen(
            [str(eg_venv / "bin" / "jupyter"), "enterprisegateway", "--ip=127.0.0.1",
             f"--port={port}", "--port_retries=0",
             "--EnterpriseGatewayApp.remote_hosts=['127.0.0.1']",
             f"--EnterpriseGatewayApp.default_kernel_name={SPEC}",
             "--EnterpriseGatewayApp.list_kernels=True",
             # See docs/deploy.md: a lost kernel_info reply must not outlast the
             # JupyterLab server's GatewayClient.request_timeout (42 s).
             "--MappingKernelManager.kernel_info_timeout=5"],
            env=env, cwd=work, stdout=log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(url + "/api/kernelspecs", proc, log)
            yield Gateway(url, proc, remote_user, log)
        finally:
            stop(proc)
            # Keep the remote kernels' logs with the gateway's (the user's home goes).
            shutil.copytree(remote_user.home / "eg-logs", work / "kernel-logs",
                            dirs_exist_ok=True)  # fmt: skip


@pytest.fixture(scope="module")
def gateway_lab(jupyter_env, gateway: Gateway, tmp_path_factory) -> Iterator[LabServer]:
    root = tmp_path_factory.mktemp("eg-lab-root")
    # jupyter_server forwards its own KERNEL_* variables to the gateway; the gateway
    # refuses kernels for root, and this is who they run as on the remote side.
    env = {**jupyter_env, "KERNEL_USERNAME": gateway.user.name}
    server = start_lab(env, root, root.parent / "eg-lab.log", [f"--gateway-url={gateway.url}"])
    yield server
    stop(server.proc)


@pytest.fixture
def lab(browser, gateway_lab):
    context, lab = new_lab(browser, gateway_lab)
    yield lab
    context.close()


def kernel_process(user: User, kernel_id: str) -> psutil.Process:
    """The remote kernel: the user's process started with ``--RemoteProcessProxy.kernel-id``."""
    for proc in user.processes():
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            continue
        parent = proc.parent()
        launched_by_us = parent is not None and "gateway_launcher" in " ".join(parent.cmdline())
        # The kernel itself, not the gateway's signal listener (its forked child).
        if "codex_exec_kernel.gateway_launcher" in cmd and kernel_id in cmd and not launched_by_us:
            return proc
    raise AssertionError(f"no remote kernel {kernel_id} among {user.name}'s processes")


def test_terminal_and_magics_run_as_the_remote_user(lab, gateway: Gateway):
    user = gateway.user
    wid = lab.open_terminal(timeout=120)
    lab.wait_prompt(wid)
    assert shell_value(lab, wid, "$(whoami)") == user.name
    assert shell_value(lab, wid, "$HOME") == str(user.home)
    name = f"written-remotely-{uuid.uuid4().hex[:8]}"
    assert shell_value(lab, wid, f"$(echo hello > ~/{name} && echo ok)") == "ok"
    assert (user.home / name).read_text() == "hello\n"
    assert not (Path.home() / name).exists(), "the file must not be in the lab user's HOME"
    pid = int(shell_value(lab, wid, "$$"))
    shell = psutil.Process(pid)
    assert shell.uids().real == user.uid
    kernel_id = terminal_kernel(lab, wid)
    ancestors = {p.pid for p in shell.parents()}
    assert kernel_process(user, kernel_id).pid in ancestors, "the shell is the remote kernel's"
    assert gateway.proc.pid not in ancestors and lab.server.proc.pid not in ancestors
    status, out = execute(lab, kernel_id, "%exec whoami; echo $HOME")
    assert status == "ok", out
    assert out.split() == [user.name, str(user.home)]
    lab.screenshot("kernel-terminal-enterprise-gateway.png", wid)


def test_background_session_survives_remote_kernel(lab, gateway: Gateway):
    user = gateway.user
    kernel_id = start_kernel(lab, SPEC)
    sid = f"eg-{uuid.uuid4().hex[:6]}"
    status, out = execute(
        lab, kernel_id,
        f"%exec --bg --id {sid} -- bash -c 'i=0; while :; do echo tick-$i; i=$((i+1)); "
        "sleep 0.2; done'",
    )  # fmt: skip
    assert status == "ok" and f"started background session {sid}" in out, out
    status, out = execute(lab, kernel_id, "%sessions")
    assert status == "ok" and sid in out and "running" in out, out
    supervisor_pid = int(re.search(rf"{sid}\s+(\d+)", out).group(1))
    session = psutil.Process(supervisor_pid)
    assert session.uids().real == user.uid

    # Restart: the gateway kills the remote kernel and launches another over SSH.
    first = kernel_process(user, kernel_id)
    restart_kernel(lab, kernel_id)
    wait_until(lambda: not first.is_running(), timeout=30)
    status, out = execute(lab, kernel_id, "%sessions")
    assert status == "ok" and sid in out and "running" in out, out
    assert session.is_running()

    # SIGKILL of the (new) remote kernel: the session lives on.
    second = kernel_process(user, kernel_id)
    assert second.pid != first.pid
    second.send_signal(signal.SIGKILL)
    wait_until(lambda: not second.is_running(), timeout=30)
    assert session.is_running()

    # A new kernel on that host lists the session and the panel attaches it.
    fresh = start_kernel(lab, SPEC)
    status, out = execute(lab, fresh, "%sessions")
    assert status == "ok" and sid in out and "running" in out, out
    wid = lab.open_terminal({"kernelId": fresh, "kernelName": SPEC, "sessionId": sid}, timeout=120)
    text = lab.wait_for_text(wid, "tick-", timeout=30)
    seen = max(int(n) for n in re.findall(r"tick-(\d+)", text))
    lab.page.wait_for_function(
        "([id, n]) => window.__kt.lines(id).some(l => { const m = /tick-(\\d+)/.exec(l);"
        " return m && +m[1] > n; })",
        arg=[wid, seen], timeout=30000, polling=100,
    )  # fmt: skip
    status, out = execute(lab, fresh, f"%sessions --delete {sid}")
    assert status == "ok", out
    wait_until(lambda: not session.is_running(), timeout=30)


def test_reload_reattaches_and_echo_latency(lab, gateway: Gateway):
    wid = lab.open_terminal(timeout=120)
    lab.wait_prompt(wid)
    latency_then_reload(lab, wid, "enterprise-gateway")
