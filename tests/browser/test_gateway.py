"""The Kernel Terminal against a remote kernel: JupyterLab with ``--gateway-url``
pointed at Jupyter Kernel Gateway on loopback, running the codex-exec kernel.

The shell must run under the gateway (where the kernel runs), not under the
JupyterLab server the browser talks to.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import psutil
import pytest
from conftest import BIN, LabServer, free_port, ms, new_lab, start_lab, stop, wait_http

pytestmark = pytest.mark.browser

#: Variables of its own the gateway passes on to kernels (it passes none by default).
KERNEL_ENV = ["HOME", "USER", "LANG", "SHELL", "PYTHONPATH", "JUPYTER_PATH", "CODEX_EXEC_HOME"]


@pytest.fixture
def gateway(jupyter_env, tmp_path) -> Iterator[subprocess.Popen]:
    port = free_port()
    log = tmp_path / "gateway.log"
    cmd = [
        str(BIN / "jupyter"), "kernelgateway",
        "--KernelGatewayApp.ip=127.0.0.1",
        f"--KernelGatewayApp.port={port}",
        "--KernelGatewayApp.port_retries=0",
        "--KernelGatewayApp.default_kernel_name=codex-exec",
        "--JupyterWebsocketPersonality.list_kernels=True",  # JupyterLab lists kernels
        # The gateway passes only the variables listed here on to kernels.
        *(f"--KernelGatewayApp.env_process_whitelist={name}" for name in KERNEL_ENV),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=jupyter_env, cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    proc.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    try:
        wait_http(proc.url + "/api", proc, log)  # type: ignore[attr-defined]
        yield proc
    finally:
        stop(proc)


@pytest.fixture
def gateway_lab(jupyter_env, gateway, tmp_path) -> Iterator[LabServer]:
    root = tmp_path / "root"
    root.mkdir()
    server = start_lab(jupyter_env, root, tmp_path / "lab.log", [f"--gateway-url={gateway.url}"])
    yield server
    stop(server.proc)


def test_terminal_runs_on_gateway_kernel(browser, gateway, gateway_lab):
    context, lab = new_lab(browser, gateway_lab)
    try:
        wid = lab.open_terminal()
        lab.wait_prompt(wid)
        lab.type(wid, "clear; echo pid=$$ host=$(hostname) end\n")
        lab.page.wait_for_function(
            "(id) => window.__kt.lines(id).some(l => /^pid=\\d+ host=\\S+ end$/.test(l.trim()))",
            arg=wid,
            timeout=ms(30),
        )
        text = lab.text(wid)
        pid = int(re.findall(r"^pid=(\d+) host=\S+ end\s*$", text, re.M)[-1])
        shell = psutil.Process(pid)
        ancestors = {p.pid for p in shell.parents()}
        assert gateway.pid in ancestors, "the shell should run under the kernel gateway"
        assert gateway_lab.proc.pid not in ancestors, "not under the JupyterLab server"
        lab.screenshot("kernel-terminal-gateway.png", wid)
    finally:
        context.close()
