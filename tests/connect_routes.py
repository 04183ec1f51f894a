"""Which server the stdio protocol suite talks to (test helper, not shipped).

``CODEX_EXEC_STDIO_ROUTE`` picks it; the suite's files are the same for every route:

* ``serve`` (default): ``codex-exec serve``.
* ``existing``: a codex-exec kernel started by jupyter_client's KernelManager from its
  kernelspec (one per client, with the stdio server's table defaults; the client's
  ``--ProcessTable.*`` options go to the kernel), reached
  with ``codex-exec connect --existing CONNECTION_FILE``.
* ``server``: ``jupyter server`` with a token on a loopback port in a temp HOME,
  reached with ``codex-exec connect --url`` (a new kernel per client, shut down when
  the relay exits).
* ``gateway``: Jupyter Kernel Gateway with an auth token, the same way.

Tests that cannot hold on a route are skipped there with the reason (see
:data:`NOT_ON_ROUTE`); nothing in the test files changes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from waiting import wait_http

ROUTE = os.environ.get("CODEX_EXEC_STDIO_ROUTE", "serve")
ROUTES = ("serve", "existing", "server", "gateway")
BIN = Path(sys.executable).parent
TOKEN = "codex-test-token-" + os.urandom(6).hex()

_KILLS_OWNER = "nobody can end a remote kernel's processes when the relay is SIGKILLed"
_KERNEL_OWNS = ("the kernel, not the relay, owns its processes: they end with the kernel, "
                "which the test harness shuts down only after the client closes")  # fmt: skip
_SERVER_SETTINGS = ("a kernel started by a Jupyter server takes no per-client "
                    "--ProcessTable settings")  # fmt: skip
_SERVER_ENV = "a kernel started by a Jupyter server has the server's environment and cwd"

#: test name → (routes where it cannot hold, why)
NOT_ON_ROUTE: dict[str, tuple[tuple[str, ...], str]] = {
    "test_sigkill_of_server_ends_everything_within_2s": (
        ("existing", "server", "gateway"), _KILLS_OWNER),
    "test_signal_to_server_ends_everything": (("existing",), _KERNEL_OWNS),
    "test_flow_control_pauses_the_child_until_acked": (("server", "gateway"), _SERVER_SETTINGS),
    "test_coalesce_cap_is_configurable": (("server", "gateway"), _SERVER_SETTINGS),
    "test_retention_cap_evicts_whole_chunks": (("server", "gateway"), _SERVER_SETTINGS),
    "test_retention_time_after_close_then_id_reusable": (("server", "gateway"), _SERVER_SETTINGS),
    "test_write_limit": (("server", "gateway"), _SERVER_SETTINGS),
    "test_max_processes": (("server", "gateway"), _SERVER_SETTINGS),
    "test_default_excludes_drop_secrets": (("server", "gateway"), _SERVER_ENV),
    "test_cwd_default_and_given": (("server", "gateway"), _SERVER_ENV),
    "test_environment_rules": (("server", "gateway"), _SERVER_ENV),
    # they point the server at a per-test session store through its environment
    # (test_connect.py re-attaches a session through a Jupyter server instead)
    "test_session_methods_over_stdio": (("server", "gateway"), _SERVER_ENV),
    "test_session_outlives_the_stdio_server": (("server", "gateway"), _SERVER_ENV),
    "test_coalescing_makes_few_large_chunks": (("server", "gateway"),
        "asserts the stdio server's 64 KiB chunk cap; a kernel's default is 2 MiB "
        "(ExecService.coalesce_max_bytes)"),
    "test_cli_help_says_what_it_is": (("existing", "server", "gateway"),
                                      "about `codex-exec serve --help` itself"),
}  # fmt: skip


def skip_reason(test_name: str) -> str | None:
    routes, why = NOT_ON_ROUTE.get(test_name.split("[")[0], ((), ""))
    return why if ROUTE in routes else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class JupyterServer:
    """A Jupyter server or Kernel Gateway on loopback, with its own HOME and dirs."""

    url: str
    token: str
    proc: subprocess.Popen
    home: Path
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kernels(self) -> list[dict]:
        req = urllib.request.Request(self.url + "api/kernels",
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


def server_env(base: Path) -> dict[str, str]:
    """Private HOME and Jupyter dirs; the venv's kernelspecs; our server extension on."""
    config = base / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"codex_exec_kernel.serverext": True}}})
    )
    env = {k: v for k, v in os.environ.items()
           if k not in ("JUPYTER_DATA_DIR", "JUPYTER_TOKEN", "JUPYTERHUB_API_TOKEN")}
    env.update({
        "HOME": str(base), "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "CODEX_EXEC_HOME": str(base / "codex"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    })  # fmt: skip
    return env


def start_jupyter_server(base: Path, token: str = TOKEN) -> JupyterServer:
    port = free_port()
    env = server_env(base)
    cmd = [str(BIN / "jupyter"), "server", "--allow-root", "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={base}"]  # fmt: skip
    return _start(cmd, env, base, f"http://127.0.0.1:{port}/", token)


#: Variables the gateway passes on to kernels (it passes none by default).
GATEWAY_KERNEL_ENV = ["HOME", "USER", "LANG", "SHELL", "PYTHONPATH", "JUPYTER_PATH",
                      "CODEX_EXEC_HOME", "PATH"]  # fmt: skip


def start_gateway(base: Path, token: str = TOKEN) -> JupyterServer:
    port = free_port()
    env = server_env(base)
    cmd = [str(BIN / "jupyter"), "kernelgateway", "--KernelGatewayApp.ip=127.0.0.1",
           f"--KernelGatewayApp.port={port}", "--KernelGatewayApp.port_retries=0",
           f"--KernelGatewayApp.auth_token={token}",
           "--KernelGatewayApp.default_kernel_name=codex-exec",
           "--JupyterWebsocketPersonality.list_kernels=True",
           *(f"--KernelGatewayApp.env_process_whitelist={n}" for n in GATEWAY_KERNEL_ENV)]
    return _start(cmd, env, base, f"http://127.0.0.1:{port}/", token)


def _start(cmd: list[str], env: dict[str, str], base: Path, url: str, token: str
           ) -> JupyterServer:  # fmt: skip
    log = base / "server.log"
    proc = subprocess.Popen(cmd, env=env, cwd=base, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)  # fmt: skip
    server = JupyterServer(url, token, proc, base, log)
    try:
        wait_http(url + "api", proc, log)
    except Exception:
        server.stop()
        raise
    return server


class RouteServer:
    """The route's long-lived server, started once per test session (see conftest)."""

    current: JupyterServer | None = None


def start_route_server() -> Callable[[], None]:
    """Start what the route needs for the session; returns how to stop it."""
    if ROUTE not in ("server", "gateway"):
        return lambda: None
    base = Path(tempfile.mkdtemp(prefix=f"codex-route-{ROUTE}-"))
    starter = start_jupyter_server if ROUTE == "server" else start_gateway
    RouteServer.current = starter(base)

    def stop() -> None:
        assert RouteServer.current is not None
        RouteServer.current.stop()
        RouteServer.current = None

    return stop


# ---------------------------------------------------------------------------- per client


def connect_command() -> list[str]:
    return [str(BIN / "codex-exec"), "connect"]


def startup_timeout(command: list[str] | None) -> float:
    """How long the first answer may take: a relay first starts or reaches a kernel."""
    return 10.0 if ROUTE == "serve" and command is None else 60.0


def client_command(options: tuple[str, ...], env: dict[str, str] | None, cwd: str | None,
                   command: list[str] | None = None,
                   ) -> tuple[list[str], dict[str, str] | None, Callable[[], None]]:  # fmt: skip
    """The command a StdioClient runs for this route (or ``command``), its env, a cleanup."""
    serve = [str(BIN / "codex-exec"), "serve"]
    if command is not None:
        return [*command, *options], env, lambda: None
    if ROUTE == "serve":
        return [*serve, *options], env, lambda: None
    kernel_opts = [o for o in options if o.startswith("--ProcessTable.")]
    relay_opts = [o for o in options if not o.startswith("--ProcessTable.")]
    if ROUTE == "existing":
        from jupyter_client.manager import KernelManager

        km = KernelManager(kernel_name="codex-exec")
        # Near the stdio server's table defaults, so that the whole suite holds unchanged
        # (a kernel's own defaults make larger chunks: see ExecService; its 64 KiB
        # chunks stay within serve's 256 KiB cap).
        stdio_defaults = ["--ExecService.coalesce_window=0.005",
                          "--ExecService.coalesce_max_bytes=65536",
                          "--ExecService.retained_bytes=1048576"]  # fmt: skip
        km.start_kernel(extra_arguments=[*stdio_defaults, *kernel_opts],
                        env=env or dict(os.environ), cwd=cwd)  # fmt: skip

        def shutdown() -> None:
            km.shutdown_kernel(now=False)
            km.cleanup_resources()

        return [*connect_command(), "--existing", km.connection_file, *relay_opts], env, shutdown
    server = RouteServer.current
    assert server is not None, f"route {ROUTE}: no server (conftest starts it)"
    relay_env = dict(env or os.environ)
    relay_env["JUPYTER_TOKEN"] = server.token  # from the environment, as a user would
    return [*connect_command(), "--url", server.url, *relay_opts], relay_env, lambda: None
