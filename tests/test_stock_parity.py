"""``codex-exec`` behaves like the stock ``python3`` kernel wherever it is not about the
process table: config files, kernelspec metadata, where it may be started, warnings."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from kernel_helpers import blocking_client, start_kernel, wait_started
from stdio_client import StdioClient
from waiting import scaled

from codex_exec_kernel.install import install
from codex_exec_kernel.kernelapp import CodexExecKernelApp


def run_cell(kc, code: str) -> dict:
    """Execute ``code``; return the ``user_expressions``-free reply content and stdout."""
    out: list[str] = []
    reply = kc.execute_interactive(
        code, timeout=scaled(60),
        output_hook=lambda m: out.append(m["content"].get("text", ""))
        if m["header"]["msg_type"] == "stream" else None,
    )  # fmt: skip
    assert reply["content"]["status"] == "ok", reply["content"]
    return {"stdout": "".join(out)}


def test_ipython_kernel_config_applies_and_ours_adds(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's ``ipython_kernel_config.py`` applies as in ``python3`` (it used to be
    ignored: IPython looked only for ``codex_exec_kernel_config.py``)."""
    ipython_dir = tmp_path / "ipython"
    profile = ipython_dir / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(textwrap.dedent("""
        c.IPKernelApp.exec_lines = ["from_stock_config = 'stock'"]
        c.InteractiveShell.ast_node_interactivity = "all"
    """))
    (profile / "codex_exec_kernel_config.py").write_text(
        "c.IPKernelApp.exec_lines.append(\"from_our_config = 'ours'\")\n"
    )
    monkeypatch.setenv("IPYTHONDIR", str(ipython_dir))
    km = start_kernel("codex-exec")
    try:
        kc = blocking_client(km)
        try:
            got = run_cell(kc, "print(from_stock_config, from_our_config)\n"
                               "print(get_ipython().ast_node_interactivity)")  # fmt: skip
            assert got["stdout"].split() == ["stock", "ours", "all"]
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)


def test_kernelspec_keeps_ipykernels_metadata(tmp_path: Path) -> None:
    """ipykernel's ``supported_encryption`` (and debugger) survive our additions."""
    from ipykernel.kernelspec import get_kernel_dict

    path = install(prefix=str(tmp_path))
    spec = json.loads((Path(path) / "kernel.json").read_text())
    for key, value in get_kernel_dict()["metadata"].items():
        assert spec["metadata"][key] == value
    assert spec["metadata"]["codex_exec"] is True
    assert "curve" in spec["metadata"]["supported_encryption"]


def test_starts_with_transport_encryption_required(tmp_path: Path) -> None:
    """A client that requires CurveZMQ can start ``codex-exec`` (it could not while the
    kernelspec dropped ``supported_encryption``)."""
    if not zmq.has("curve"):
        pytest.skip("libzmq built without CURVE")
    path = install(prefix=str(tmp_path))
    ksm = KernelSpecManager(kernel_dirs=[str(Path(path).parent)])
    km = KernelManager(kernel_name="codex-exec", kernel_spec_manager=ksm,
                       transport_encryption="required")  # fmt: skip
    wait_started(km)
    try:
        kc = blocking_client(km)
        try:
            assert "6" in run_cell(kc, "print(2 * 3)")["stdout"]
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)


BACKGROUND_THREAD = """
import asyncio, threading
from codex_exec_kernel.kernelapp import CodexExecKernelApp

def launch():
    asyncio.set_event_loop(asyncio.new_event_loop())
    CodexExecKernelApp.launch_instance()

thread = threading.Thread(target=launch)
thread.start()
thread.join()
"""


def test_starts_on_a_background_thread(tmp_path: Path) -> None:
    """As ipykernel's ``test_start_kernel_background_thread``: started off the main
    thread the app runs (it died on ``signal only works in main thread``)."""
    script = tmp_path / "launch.py"
    script.write_text(BACKGROUND_THREAD)
    km = KernelManager()
    km.kernel_cmd = []  # not used: argv below
    km.kernel_spec.argv = [sys.executable, str(script), "-f", "{connection_file}"]
    wait_started(km)
    try:
        kc = blocking_client(km)
        try:
            got = run_cell(kc, "%exec echo thread-ok")
            assert "thread-ok" in got["stdout"]
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)


def test_bind_socket_uses_no_deprecated_pyzmq_api() -> None:
    app = CodexExecKernelApp(ip="127.0.0.1", transport="tcp")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            app._bind_socket(sock, 0)
        assert sock.get(zmq.SNDHWM) == app.iopub_sndhwm  # applied, without the deprecated API
    finally:
        sock.close(0)
        ctx.term()


def test_serve_reads_its_config_file(tmp_path: Path) -> None:
    """``codex_exec_serve_config.py`` in the Jupyter config dir applies; --help-all
    names the file."""
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir()
    (config_dir / "codex_exec_serve_config.py").write_text(
        "c.StdioServer.max_message_bytes = 1000\n"
    )
    import os

    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir)}
    client = StdioClient(env=env)
    try:
        client.send_raw(b'{"jsonrpc": "2.0", "id": 1, "method": "x", "pad": "' + b"a" * 2000
                        + b'"}')  # fmt: skip
        err = client.wait_unmatched()
        assert "longer than 1000 bytes" in err["error"]["message"]
    finally:
        client.close()
    from commands import CODEX_EXEC

    help_all = subprocess.run([CODEX_EXEC, "serve", "--help-all"], capture_output=True,
                              text=True, check=True).stdout  # fmt: skip
    assert "codex_exec_serve_config.py" in help_all and "--config" in help_all
