"""``codex-exec connect`` beyond the shared stdio suite: dropped websockets, errors,
sessions through the relay, and the Python client's ``connect_url``.

Real servers on loopback: ``jupyter server`` with a token in a temp HOME, a
codex-exec kernel from its kernelspec via jupyter_client, and a cuttable TCP proxy
in front of the server for the drop tests. (The stdio suite itself runs against
each route in test_connect_suite.py.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from connect_routes import JupyterServer, connect_command, free_port, start_jupyter_server
from stdio_client import StdioClient, b64
from tcp_proxy import TcpProxy
from waiting import wait_until

from codex_exec_kernel.client import AsyncExecClient, ExecClient, ExecError

MB = 1_000_000


@pytest.fixture(scope="module")
def jserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    server = start_jupyter_server(tmp_path_factory.mktemp("jserver"))
    yield server
    server.stop()


def relay_env(token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN",
                                                           "JUPYTERHUB_API_TOKEN")}
    if token is not None:
        env["JUPYTER_TOKEN"] = token
    return env


def connect(*args: str, token: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*connect_command(), *args], input=b"", capture_output=True,
                          env=relay_env(token), timeout=120)  # fmt: skip


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, r
    assert r.stdout == b""
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("codex-exec connect: ")
    return lines[0]


def open_relay(url: str, token: str, flow_control: bool = False) -> StdioClient:
    """A StdioClient on ``codex-exec connect --url`` (whatever the suite's route)."""
    return StdioClient(command=[*connect_command(), "--url", url], env=relay_env(token),
                       flow_control=flow_control)  # fmt: skip


@contextlib.contextmanager
def relaying(url: str, token: str) -> Iterator[StdioClient]:
    client = open_relay(url, token)
    try:
        yield client
    finally:
        assert client.close(60) == 0


# ---------------------------------------------------------------------------- errors


def test_wrong_token_is_one_line_error(jserver: JupyterServer) -> None:
    line = one_line_error(connect("--url", jserver.url, token="not-the-token"))
    assert "refused the token" in line and "403" in line
    assert jserver.kernels() == []


def test_token_in_url_query_is_used(jserver: JupyterServer) -> None:
    with relaying(jserver.url + f"lab?token={jserver.token}", "wrong") as relay:
        assert relay.run(["echo", "ok"])["stdout"] == b"ok\n"


def test_unknown_kernel_id_is_one_line_error(jserver: JupyterServer) -> None:
    line = one_line_error(connect("--url", jserver.url, "--kernel", "no-such-kernel",
                                  token=jserver.token))  # fmt: skip
    assert "no kernel with id no-such-kernel" in line


def test_kernel_without_extension_url(jserver: JupyterServer) -> None:
    line = one_line_error(connect("--url", jserver.url, "--kernel-name", "python3",
                                  token=jserver.token))  # fmt: skip
    assert "has no codex.exec comm target" in line
    wait_until(lambda: jserver.kernels() == [], 20, message="the started kernel to be shut down")


def test_kernel_without_extension_existing() -> None:
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    try:
        line = one_line_error(connect("--existing", km.connection_file))
        assert "has no codex.exec comm target" in line
    finally:
        km.shutdown_kernel(now=True)


def test_unreachable_server_and_missing_connection_file(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    assert "cannot reach" in one_line_error(connect("--url", f"http://127.0.0.1:{port}/"))
    assert "connection file" in one_line_error(connect("--existing", str(tmp_path / "no.json")))


def test_kernel_shut_down_under_the_relay_ends_it(jserver: JupyterServer) -> None:
    relay = open_relay(jserver.url, jserver.token)
    try:
        relay.request("process/start", {"argv": ["sleep", "60"], "processId": "s"})
        (kernel,) = jserver.kernels()
        req = urllib.request.Request(f"{jserver.url}api/kernels/{kernel['id']}", method="DELETE",
                                     headers={"Authorization": f"token {jserver.token}"})
        urllib.request.urlopen(req, timeout=30).close()
        assert relay.proc.wait(60) == 1
        err = relay.proc.stderr.read().decode().strip().splitlines()
        assert err and "kernel" in err[-1] and ("gone" in err[-1] or "no kernel" in err[-1]
                                                or "died" in err[-1]), err
    finally:
        relay.close()


def test_kernel_restart_under_the_relay_ends_it() -> None:
    """A restart empties the kernel's table: the relay says so and exits 1 (no hang)."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="codex-exec")
    km.start_kernel()
    relay = StdioClient(command=[*connect_command(), "--existing", km.connection_file])
    try:
        relay.request("process/start", {"argv": ["sleep", "60"]})
        km.restart_kernel(now=True)
        assert relay.proc.wait(60) == 1
        err = relay.proc.stderr.read().decode().strip().splitlines()
        assert err and ("restarted" in err[-1] or "stopped answering" in err[-1]), err
    finally:
        relay.close()
        km.shutdown_kernel(now=True)


# ---------------------------------------------------------------------------- drops


def _flood_cmd(total: int) -> list[str]:
    return ["python3", "-c",
            "import sys\nblock = bytes(range(256)) * 4096\nout = sys.stdout.buffer\n"
            f"for _ in range({total} // len(block)): out.write(block)\nout.flush()\n"]


@pytest.mark.parametrize("flow_control", [True, False], ids=["peer-acks", "relay-acks"])
def test_websocket_dropped_mid_flood_loses_and_doubles_nothing(jserver: JupyterServer,
                                                              flow_control: bool) -> None:
    total = 64 * 1024 * 1024
    proxy = TcpProxy(int(jserver.url.rsplit(":", 1)[1].strip("/")))
    relay = open_relay(f"http://127.0.0.1:{proxy.port}/", jserver.token, flow_control=flow_control)
    digest, received, seqs, cuts = hashlib.sha256(), [0], [], []
    done = threading.Event()

    def on_note(msg: dict) -> None:
        params = msg["params"]
        if params.get("processId") != "flood":
            return
        seqs.append(params["seq"])
        if msg["method"] == "process/output":
            chunk = base64.b64decode(params["chunk"])
            digest.update(chunk)
            received[0] += len(chunk)
            if flow_control:
                relay.notify("process/ack", {"processId": "flood", "seq": params["seq"]})
            if len(cuts) < 2 and received[0] > (len(cuts) + 1) * total // 3:
                cuts.append(proxy.cut())  # mid-flood, twice
        elif msg["method"] == "process/closed":
            done.set()

    relay.on_notification = on_note
    try:
        relay.request("process/start", {"argv": _flood_cmd(total), "processId": "flood"})
        assert done.wait(180), f"flood did not finish: {received[0]} bytes, cuts {cuts}"
        assert len(cuts) == 2 and all(cuts) and proxy.accepted >= 3
        assert seqs == list(range(1, len(seqs) + 1)), "every seq once, in order"
        expected = hashlib.sha256((bytes(range(256)) * 4096) * (total // (1 << 20)))
        assert received[0] == total and digest.hexdigest() == expected.hexdigest()
        assert relay.request("process/list")["processes"][0]["closed"]
    finally:
        relay.close()
        proxy.close()


def test_writes_with_write_ids_are_not_repeated_across_a_drop(jserver: JupyterServer) -> None:
    proxy = TcpProxy(int(jserver.url.rsplit(":", 1)[1].strip("/")))
    relay = open_relay(f"http://127.0.0.1:{proxy.port}/", jserver.token)
    try:
        relay.request("process/start", {"argv": ["cat"], "pipeStdin": True, "processId": "c"})
        pieces = [os.urandom(1000) for _ in range(60)]
        ids = []
        for i, piece in enumerate(pieces):
            # half with the peer's writeIds, half without (the relay adds its own)
            params = {"processId": "c", "chunk": b64(piece)}
            if i % 2:
                params["writeId"] = f"w{i}"
            relay.send({"id": f"write-{i}", "method": "process/write", "params": params})
            ids.append(f"write-{i}")
            if i in (20, 40):
                proxy.cut()  # the write just sent may or may not have reached the kernel
        for msg_id in ids:
            assert relay.wait_response(msg_id, 60)["result"] == {"status": "accepted"}
        relay.request("process/closeStdin", {"processId": "c"})
        relay.wait_closed("c", 60)
        assert relay.output_so_far("c") == b"".join(pieces)
        assert proxy.accepted >= 3
    finally:
        relay.close()
        proxy.close()


# ---------------------------------------------------------------------------- sessions


def test_session_created_through_one_relay_is_reattached_by_another(jserver) -> None:
    """A background session outlives the relay and its kernel; a later relay (a new
    kernel on the same server) lists it, attaches and reads its output."""
    with relaying(jserver.url, jserver.token) as first:
        created = first.request("session/create", {
            "id": "remote-job", "argv": ["sh", "-c", "echo started; read x; echo got $x"]})
        assert created["id"] == "remote-job"
    with relaying(jserver.url, jserver.token) as second:
        try:
            listed = {s["id"]: s for s in second.request("session/list")["sessions"]}
            assert listed["remote-job"]["status"] == "running"
            pid = second.request("session/attach", {"id": "remote-job", "fromOffset": 0})[
                "processId"]
            second.wait_output(pid, lambda d: b"started" in d, 30)
            second.request("process/write", {"processId": pid, "chunk": b64(b"hello\n")})
            second.wait_output(pid, lambda d: b"got hello" in d, 30)
        finally:
            second.request("session/delete", {"id": "remote-job", "graceMs": 100})


# ---------------------------------------------------------------------------- Python client


def test_python_client_connect_url(jserver: JupyterServer) -> None:
    with ExecClient.connect_url(jserver.url, token=jserver.token) as client:
        out = client.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30)
        assert (out.stdout, out.stderr, out.exit_code) == (b"out\n", b"err\n", 3)
        proc = client.exec(["cat"], pipe_stdin=True)
        assert proc.write(b"x" * 3_000_000, write_id="big") == "accepted"
        proc.close_stdin()
        assert proc.output(30).stdout == b"x" * 3_000_000
        assert len(jserver.kernels()) == 1
    wait_until(lambda: jserver.kernels() == [], 20, message="the client's kernel to go")


def test_async_client_connect_url_to_a_running_kernel(jserver: JupyterServer) -> None:
    async def main() -> None:
        first = await AsyncExecClient.connect_url(jserver.url, token=jserver.token,
                                                  keep_kernel=True)  # fmt: skip
        proc = await first.exec(["sleep", "60"], process_id="kept")
        kernel_id = first.kernel_id
        await first.close()
        second = await AsyncExecClient.connect_url(jserver.url, token=jserver.token,
                                                   kernel_id=kernel_id)  # fmt: skip
        try:
            assert [p.process_id for p in await second.list()] == ["kept"]
            await (await second.attach("kept")).terminate(100)
            assert proc.pid
        finally:
            await second.close(shutdown_kernel=True)
        with pytest.raises(ExecError, match="refused the token"):
            await AsyncExecClient.connect_url(jserver.url, token="wrong")

    asyncio.run(main())
    wait_until(lambda: jserver.kernels() == [], 20, message="the kernel to go")


def test_cli_help_names_connect() -> None:
    out = subprocess.run([sys.executable, "-m", "codex_exec_kernel.cli", "--help"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "connect" in out
