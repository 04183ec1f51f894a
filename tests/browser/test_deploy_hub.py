"""JupyterHub with two local users: LocalProcessSpawner, DummyAuthenticator, and
configurable-http-proxy from npm, all on loopback ports of their own.

The single-user servers run from a venv holding this product (its labextension and
server extension come with the wheel; the kernelspec is installed with
``codex-exec install --sys-prefix``), as ``alice<random>`` and ``bob<random>``.

What must hold: each user's Kernel Terminal and ``%exec`` run as that user; the panel
works through the hub's proxy, including a reload that re-attaches; its keystroke
echo through the proxy is measured; ``bob`` cannot list, attach, read the logs of,
signal or delete ``alice``'s sessions by any route (magics, panel, sidebar, CLI,
protocol).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import PAGE_HELPERS, Lab, LabServer, free_port, stop, wait_http
from deploy_env import (
    User,
    chp_command,
    execute,
    latency_then_reload,
    require_root,
    run,
    shell_value,
    start_kernel,
    terminal_kernel,
    unix_user,
    venv,
)
from stdio_client import RpcError, StdioClient
from waiting import wait_until

pytestmark = pytest.mark.browser

PASSWORD = "not-a-secret"  # DummyAuthenticator's shared password (loopback only)

HUB_CONFIG = """\
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.pid_file = {workdir!r} + "/proxy.pid"
c.JupyterHub.db_url = "sqlite:///" + {workdir!r} + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = {workdir!r} + "/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = {workdir!r} + "/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allowed_users = {users!r}
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.ip = "127.0.0.1"
c.Spawner.default_url = "/lab"
c.Spawner.args = ["--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
                  "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.JupyterHub.services = [{{"name": "test-admin", "api_token": {admin_token!r}}}]
c.JupyterHub.load_roles = [{{"name": "test-admin-role", "services": ["test-admin"],
    "scopes": ["admin:users", "admin:servers", "tokens", "access:servers"]}}]
"""


@dataclass
class Hub:
    url: str
    proc: subprocess.Popen
    admin_token: str
    alice: User
    bob: User
    venv: Path

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.url + "/hub/api" + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.admin_token}"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else {}

    def start_server(self, user: User) -> None:
        """Spawn ``user``'s single-user server and wait until the hub says it is ready."""
        self.api("POST", f"/users/{user.name}/server")
        wait_until(
            lambda: self.api("GET", f"/users/{user.name}")["servers"].get("", {}).get("ready"),
            timeout=90,
        )


def answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    require_root()
    hub_venv, chp = venv("hub"), chp_command()
    run([str(hub_venv / "bin" / "codex-exec"), "install", "--sys-prefix"])
    run(["chmod", "-R", "a+rX", str(hub_venv / "share" / "jupyter")])
    work = tmp_path_factory.mktemp("jupyterhub")
    with unix_user("alice") as alice, unix_user("bob") as bob:
        admin_token = uuid.uuid4().hex
        public_port = free_port()
        (work / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            public_port=public_port, hub_port=free_port(), proxy_api_port=free_port(),
            chp=str(chp), workdir=str(work), password=PASSWORD,
            users={alice.name, bob.name}, admin_token=admin_token,
            singleuser=str(hub_venv / "bin" / "jupyterhub-singleuser"),
        ))  # fmt: skip
        env = {
            "PATH": f"{hub_venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(work),
        }
        log = work / "hub.log"
        proc = subprocess.Popen(
            [str(hub_venv / "bin" / "jupyterhub"), "-f", str(work / "jupyterhub_config.py")],
            env=env, cwd=work, stdout=log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{public_port}"
        try:
            wait_http(url + "/hub/api/", proc, log)
            # The proxy answers (404) before the hub has added its route.
            wait_until(lambda: answers_ok(url + "/hub/api/") or proc.poll() is not None,
                       timeout=60)  # fmt: skip
            assert proc.poll() is None, log.read_text()[-4000:]
            yield Hub(url, proc, admin_token, alice, bob, hub_venv)
        finally:
            stop(proc)


def hub_lab(browser, hub: Hub, user: User) -> tuple[object, Lab]:
    """A browser context logged in to the hub as ``user``, on their JupyterLab."""
    hub.start_server(user)
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    context.add_init_script(PAGE_HELPERS)
    page = context.new_page()
    page.set_default_timeout(60000)
    page.goto(hub.url + "/hub/login")
    page.fill("#username_input", user.name)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url("**/user/**", timeout=90000)
    server = LabServer(f"{hub.url}/user/{user.name}/", hub.proc, user.home, {})
    lab = Lab(page, server)
    lab.goto(reset=True)
    return context, lab


@pytest.fixture(scope="module")
def alice_lab(browser, hub: Hub) -> Iterator[Lab]:
    context, lab = hub_lab(browser, hub, hub.alice)
    yield lab
    context.close()


@pytest.fixture(scope="module")
def bob_lab(browser, hub: Hub) -> Iterator[Lab]:
    context, lab = hub_lab(browser, hub, hub.bob)
    yield lab
    context.close()


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_terminal_and_exec_run_as_the_user(request, hub: Hub, who: str):
    user: User = getattr(hub, who)
    lab: Lab = request.getfixturevalue(f"{who}_lab")
    wid = lab.open_terminal()
    lab.wait_prompt(wid)
    assert shell_value(lab, wid, "$(whoami)") == user.name
    assert shell_value(lab, wid, "$HOME") == str(user.home)
    shell = psutil.Process(int(shell_value(lab, wid, "$$")))
    assert shell.uids().real == user.uid
    status, out = execute(lab, terminal_kernel(lab, wid), "%exec whoami")
    assert status == "ok" and out.split() == [user.name], out


def test_panel_through_the_proxy_reload_and_latency(alice_lab: Lab, hub: Hub):
    wid = alice_lab.open_terminal()
    alice_lab.wait_prompt(wid)
    latency_then_reload(alice_lab, wid, "jupyterhub-proxy", "kernel-terminal-jupyterhub.png")


def alice_store(hub: Hub) -> str:
    return str(hub.alice.home / ".local" / "share" / "codex-exec")


def session_pid(hub: Hub, sid: str) -> int:
    """The pid of alice's session ``sid`` (its child), from her own CLI."""
    out = hub.alice.run([str(hub.venv / "bin" / "codex-exec"), "session", "list", "--json"])
    listed = json.loads(out.stdout)
    sessions = listed["sessions"] if isinstance(listed, dict) else listed
    return next(s["pid"] for s in sessions if s["id"] == sid)


def test_bob_cannot_reach_alices_sessions(alice_lab: Lab, bob_lab: Lab, hub: Hub):
    secret = f"alice-secret-{uuid.uuid4().hex[:8]}"
    sid = f"private-{uuid.uuid4().hex[:6]}"
    alice_kernel = start_kernel(alice_lab, "codex-exec")
    status, out = execute(
        alice_lab, alice_kernel,
        f"%exec --bg --id {sid} -- bash -c 'echo {secret}; exec sleep 600'",
    )  # fmt: skip
    assert status == "ok" and sid in out, out
    wait_until(lambda: secret in hub.alice.run(
        [str(hub.venv / "bin" / "codex-exec"), "session", "logs", sid]).stdout, timeout=15)
    supervisor = psutil.Process(session_pid(hub, sid))

    def intact() -> None:
        assert supervisor.is_running(), "alice's session must survive bob's attempts"
        logs = hub.alice.run([str(hub.venv / "bin" / "codex-exec"), "session", "logs", sid])
        assert secret in logs.stdout, logs

    # The hub: bob's browser cannot reach alice's server (kernels, hence her panel).
    statuses = bob_lab.page.evaluate(
        """async (name) => {
            const out = {};
            for (const path of ['api/kernels', 'api/sessions', 'lab']) {
              const r = await fetch(`/user/${name}/${path}`, {redirect: 'manual'});
              out[path] = r.status;
            }
            return out;
        }""",
        hub.alice.name,
    )
    assert all(code in (0, 302, 403, 404) for code in statuses.values()), statuses
    assert statuses["api/kernels"] == 403, statuses

    # Magics in bob's kernel: his own store does not have it; alice's store is closed.
    bob_kernel = start_kernel(bob_lab, "codex-exec")
    for line in ["%sessions", f"%attach {sid}", f"%logs {sid}", f"%sessions --delete {sid}"]:
        status, out = execute(bob_lab, bob_kernel, line)
        assert secret not in out and "deleted" not in out, (line, out)
        if line != "%sessions":
            assert status == "error", (line, out)
        else:
            assert sid not in out, out
    status, out = execute(bob_lab, bob_kernel, f"%env CODEX_EXEC_HOME={alice_store(hub)}")
    for line in ["%sessions", f"%attach {sid}", f"%logs {sid}", f"%sessions --delete {sid}"]:
        status, out = execute(bob_lab, bob_kernel, line)
        assert status == "error" and secret not in out and "deleted" not in out, (line, out)
    intact()

    # The panel (protocol over bob's kernel's comm): attaching by id fails visibly.
    opened = bob_lab.page.evaluate(
        """async ([kernelId, sid]) => {
            const w = await window.jupyterapp.commands.execute('codex-exec:open-terminal',
                {kernelId, kernelName: 'codex-exec', sessionId: sid});
            try { await Promise.race([w.ready, new Promise((_, rej) =>
                    setTimeout(() => rej(new Error('timeout')), 30000))]);
                  return {ready: true, id: w.id}; }
            catch (e) { return {ready: false, id: w.id, error: String(e)}; }
        }""",
        [bob_kernel, sid],
    )
    assert secret not in bob_lab.text(opened["id"]), opened
    assert not opened["ready"], opened
    # The sidebar (session/list over bob's kernel) shows his session, not hers.
    bobs = f"bobs-{uuid.uuid4().hex[:6]}"
    status, out = execute(bob_lab, bob_kernel,
                          f"%env CODEX_EXEC_HOME={hub.bob.home}/.local/share/codex-exec")
    status, out = execute(bob_lab, bob_kernel, f"%exec --bg --id {bobs} -- sleep 600")
    assert status == "ok", out
    bob_lab.execute("codex-exec:show-processes", {"kernelId": bob_kernel})
    bob_lab.page.wait_for_function(
        "(sid) => (document.getElementById('codex-exec-sessions')?.innerText || '')"
        ".includes(sid)", arg=bobs, timeout=30000, polling=200,
    )  # fmt: skip
    sidebar = bob_lab.page.evaluate(
        "() => document.getElementById('codex-exec-sessions').innerText"
    )
    assert sid not in sidebar and secret not in sidebar, sidebar

    # The CLI as bob, at his store and at alice's.
    codex = str(hub.venv / "bin" / "codex-exec")
    for env in ({}, {"CODEX_EXEC_HOME": alice_store(hub)}):
        listing = hub.bob.run([codex, "session", "list", "--json"], env=env)
        assert sid not in listing.stdout and secret not in listing.stdout, listing
        for cmd in (["logs", sid], ["signal", sid, "kill"], ["delete", sid],
                    ["attach", sid]):  # fmt: skip
            result = hub.bob.run([codex, "session", *cmd], env=env, input="", timeout=30)
            assert result.returncode != 0, (cmd, env, result)
            assert secret not in result.stdout + result.stderr, (cmd, result)
    intact()

    # The protocol (codex-exec serve) as bob, pointed at alice's store.
    server = StdioClient(
        command=["setpriv", f"--reuid={hub.bob.uid}", f"--regid={hub.bob.uid}",
                 "--init-groups", codex, "serve"],
        env={"HOME": str(hub.bob.home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
             "CODEX_EXEC_HOME": alice_store(hub)},
        cwd=str(hub.bob.home),
    )  # fmt: skip
    try:
        try:
            listed = server.request("session/list", {})
            assert sid not in json.dumps(listed), listed
        except RpcError:
            pass
        for method, params in [
            ("session/attach", {"id": sid}),
            ("session/logs", {"id": sid}),
            ("session/signal", {"id": sid, "signal": "kill"}),
            ("session/delete", {"id": sid}),
        ]:
            reply = server.call(method, params)
            assert "error" in reply, (method, reply)
            assert reply["error"]["code"] != -32602, ("params are right", method, reply)
            assert secret not in json.dumps(reply), (method, reply)
    finally:
        server.close()
    intact()
    status, out = execute(alice_lab, alice_kernel, f"%sessions --delete {sid}")
    assert status == "ok", out
