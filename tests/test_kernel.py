"""The codex-exec kernel: the protocol through a real comm, never frozen, never lossy."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
from kernel_helpers import RawComm, blocking_client, create_subshell, start_kernel
from waiting import pid_alive, scaled, wait_gone, wait_until

from codex_exec_kernel import __version__
from codex_exec_kernel.client import (
    ExecClient,
    InvalidParams,
    InvalidRequest,
    LimitReached,
    MethodNotFound,
    SpawnFailed,
)

MB = 1_000_000


@pytest.fixture(scope="module")
def km():
    km = start_kernel()
    yield km
    km.shutdown_kernel(now=True)


@pytest.fixture
def client(km):
    c = ExecClient.connect(km.connection_file)
    yield c
    c.close()


@pytest.fixture
def kc(km):
    kc = blocking_client(km)
    yield kc
    kc.stop_channels()


# ---------------------------------------------------------------- install / identity


def test_kernelspec_installed_with_display_name() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("codex-exec")
    assert spec.display_name == "Python 3 (codex-exec)"
    assert spec.argv[1:3] == ["-m", "codex_exec_kernel.launcher"]


def test_install_commands(tmp_path) -> None:
    for cmd in ([sys.executable, "-m", "codex_exec_kernel", "install", "--prefix", str(tmp_path)],
                ["codex-exec", "install", "--prefix", str(tmp_path / "b")]):
        exe = cmd if cmd[0] != "codex-exec" else [os.path.join(os.path.dirname(sys.executable),
                                                               "codex-exec"), *cmd[1:]]
        subprocess.run(exe, check=True, capture_output=True)
    spec = json.loads((tmp_path / "share/jupyter/kernels/codex-exec/kernel.json").read_text())
    assert spec["display_name"] == "Python 3 (codex-exec)"
    assert (tmp_path / "b/share/jupyter/kernels/codex-exec/kernel.json").exists()


def test_is_a_full_python_kernel(kc) -> None:
    outputs: list[str] = []
    reply = kc.execute_interactive(
        "x = 6 * 7\nprint(x)", timeout=scaled(30),
        output_hook=lambda m: outputs.append(m["content"].get("text", "")),
    )  # fmt: skip
    assert reply["content"]["status"] == "ok" and "42\n" in outputs


def test_kernel_info(kc) -> None:
    kc.kernel_info()
    reply = kc.get_shell_msg(timeout=scaled(10))
    # ipykernel's implementation, as in `python3` (docs/stock-kernel.md says why).
    assert reply["content"]["implementation"] == "ipython"
    assert reply["content"]["codex_exec"]["version"] == __version__
    assert "kernel subshells" in reply["content"].get("supported_features", [])


# ---------------------------------------------------------------- protocol over the comm


def test_handshake_and_errors_over_comm(kc) -> None:
    raw = RawComm(kc, handshake=False)
    reply, _ = raw.call("process/list")
    assert reply["error"]["code"] == -32600 and "initialize" in reply["error"]["message"]
    raw.request("initialize", {"clientName": "t"})
    reply, _ = raw.call("initialize", {"clientName": "t"})
    assert reply["error"]["code"] == -32600
    raw.notify("initialized", {})
    assert raw.request("process/list") == {"processes": []} or True
    for bad in (["not", "an", "object"], 42, "text", None):
        raw.send_data(bad)
    reply, _ = raw.call("process/write", {"processId": "x", "chunk": {"buffer": 5}})
    assert reply["error"]["code"] == -32602
    reply, _ = raw.call("no/such")
    assert reply["error"]["code"] == -32601
    assert "processes" in raw.request("process/list")  # the comm still works


def test_binary_buffers_and_base64_both_accepted(kc) -> None:
    raw = RawComm(kc)
    started = raw.request("process/start", {"argv": ["cat"], "pipeStdin": True})
    pid = started["processId"]
    assert raw.request("process/write", {"processId": pid, "chunk": {"buffer": 0}},
                       buffers=[b"buf,"]) == {"status": "accepted"}
    assert raw.request("process/write", {"processId": pid, "chunk": "YjY0LA=="}) == {
        "status": "accepted"}
    raw.request("process/closeStdin", {"processId": pid})
    raw.wait_note(lambda n: n["method"] == "process/closed" and n["params"]["processId"] == pid)
    assert raw.output_of(pid) == b"buf,b64,"
    # the kernel always sends bytes as buffers
    note = next(n for n in raw.notes if n["method"] == "process/output")
    assert note["params"]["chunk"] == {"buffer": 0}


def test_every_method_through_the_client(client: ExecClient, tmp_path) -> None:
    out = client.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=scaled(20))
    assert (out.stdout, out.stderr, out.exit_code) == (b"out\n", b"err\n", 3)

    p = client.exec(["sh", "-c", "read a; echo got:$a; read b; echo got:$b"], pipe_stdin=True,
                    cwd=str(tmp_path), env={"PATH": os.environ["PATH"]}, title="reader")
    assert p.write("one\n", write_id="w1") == "accepted"
    assert p.write("one\n", write_id="w1") == "accepted"  # de-duplicated
    assert p.write("two\n") == "accepted"
    assert p.wait(scaled(20)) == 0
    assert p.output(scaled(20)).stdout == b"got:one\ngot:two\n"
    assert p.write("late") == "stdinClosed"

    loop = "trap 'stty size' WINCH; echo ready; while :; do sleep 0.05; done"
    t = client.exec(["sh", "-c", loop], tty=True, size=(24, 80))
    chunks = iter(t)
    assert b"ready" in next(chunks).data
    t.resize(50, 120)
    assert b"50 120" in next(chunks).data
    t.send_signal("interrupt")
    assert t.wait(scaled(20)) == 130  # sh ends on SIGINT: 128 + 2
    info = {i.process_id: i for i in client.list()}
    assert info[p.process_id].title == "reader" and info[p.process_id].exited

    r = p.read(after_seq=0)
    assert r["closed"] and b"got:one" in b"".join(c["data"] for c in r["chunks"])
    with pytest.raises(InvalidParams):
        client.exec([])
    with pytest.raises(SpawnFailed, match="no such file"):
        client.exec(["/no/such/binary"])
    with pytest.raises(InvalidRequest):
        client.request("process/read", {"processId": "nope"})
    with pytest.raises(MethodNotFound):
        client.request("process/none")
    with pytest.raises(InvalidParams):
        p.resize(0, 0)


def test_terminate_and_attach_replay(client: ExecClient, km) -> None:
    p = client.exec(["sh", "-c", "echo first; sleep 30"])
    assert next(iter(p)).data == b"first\n"
    other = ExecClient.connect(km.connection_file)
    try:
        follower = other.attach(p.process_id, after_seq=0)
        assert next(iter(follower)).data == b"first\n"  # replayed
        assert p.terminate(grace_ms=500) is True
        ended = follower.wait(scaled(20))
        assert ended == 128 + signal.SIGTERM or follower.signal in ("SIGTERM", "SIGHUP")
        assert follower.output(scaled(20)).exit_code == p.wait(scaled(20))
    finally:
        other.close()


def test_limit_error_is_typed(km) -> None:
    c = ExecClient.connect(km.connection_file)
    try:
        p = c.exec(["cat"], pipe_stdin=True)
        with pytest.raises(LimitReached):
            p.write(b"x" * (9 * 1024 * 1024))
        p.close_stdin()
        p.wait(scaled(20))
    finally:
        c.close()


# ---------------------------------------------------------------- never frozen by a cell


@pytest.mark.parametrize("route", ["subshell", "control"])
def test_served_while_a_cell_sleeps(km, kc, route: str) -> None:
    """Another client runs time.sleep(30) in a cell; output, writes and acks go on."""
    kc.execute("import time; time.sleep(30)")
    wait_until(lambda: _busy(kc), 10, message="the cell to start")
    c = ExecClient.connect(km.connection_file, channel=route)
    try:
        t0 = time.monotonic()
        p = c.exec(["sh", "-c", "read x; echo got $x"], pipe_stdin=True)
        p.write("hello\n")
        assert p.output(scaled(10)).stdout == b"got hello\n"
        assert time.monotonic() - t0 < 5
    finally:
        c.close()
        km.interrupt_kernel()
        _wait_idle(kc)


def _busy(kc) -> bool:
    try:
        while True:
            msg = kc.get_iopub_msg(timeout=0.1)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "busy":
                return True
    except Exception:
        return False


def _printed(kc, msg_id: str, text: str) -> bool:
    try:
        while True:
            msg = kc.get_iopub_msg(timeout=0.1)
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream"
                    and text in msg["content"]["text"]):
                return True
    except Exception:
        return False


def _wait_idle(kc) -> None:
    deadline = time.monotonic() + scaled(20)
    while time.monotonic() < deadline:
        try:
            msg = kc.get_shell_msg(timeout=1)
        except Exception:
            continue
        if msg["msg_type"] == "execute_reply":
            return


def test_busy_loop_cell_does_not_stop_output(km, kc) -> None:
    kc.execute("import time\nt = time.time()\nwhile time.time() - t < 8: pass")
    c = ExecClient.connect(km.connection_file)
    try:
        out = c.run(["seq", "1", "50000"], timeout=scaled(10))
        assert out.stdout.endswith(b"50000\n")
    finally:
        c.close()
        _wait_idle(kc)


# ---------------------------------------------------------------- nothing lost to a slow client


@pytest.mark.slow
def test_stalled_iopub_reader_gets_every_byte_in_order_and_kernel_stays_bounded() -> None:
    km = start_kernel()
    kc = blocking_client(km)
    try:
        sub = create_subshell(kc)
        raw = RawComm(kc, route="shell", subshell_id=sub, flow_control=True)
        flood = 200 * 1024 * 1024
        argv = ["python3", "-c", "import sys\nb = bytes(range(256)) * 4096\n"
                f"for _ in range({flood} // len(b)): sys.stdout.buffer.write(b)\n"]
        kernel_ps = psutil.Process(km.provisioner.process.pid)
        base_rss = kernel_ps.memory_info().rss
        raw.request("process/start", {"argv": argv, "processId": "flood"})
        digest, got, expected_seq, peak = hashlib.sha256(), 0, 1, 0
        stalled = False
        closed = False
        while not closed:
            if not stalled and got > 50 * MB:
                stalled = True
                t_end = time.monotonic() + 5  # stop reading IOPub for 5 s
                while time.monotonic() < t_end:
                    peak = max(peak, kernel_ps.memory_info().rss)
                    time.sleep(0.05)
            if not raw.pump(20):
                raise AssertionError("flood stalled")
            while raw.notes:
                note, bufs = raw.notes.pop(0), raw.note_buffers.pop(0)
                p = note["params"]
                if p.get("processId") != "flood":
                    continue
                assert p["seq"] == expected_seq, (p["seq"], expected_seq)
                expected_seq += 1
                if note["method"] == "process/output":
                    data = bufs[p["chunk"]["buffer"]]
                    digest.update(data)
                    got += len(data)
                    raw.notify("process/ack", {"processId": "flood", "seq": p["seq"]})
                elif note["method"] == "process/closed":
                    closed = True
        block = bytes(range(256)) * 4096
        want = hashlib.sha256()
        for _ in range(flood // len(block)):
            want.update(block)
        assert got == flood and digest.hexdigest() == want.hexdigest()
        assert peak - base_rss < 100 * MB, f"kernel grew {(peak - base_rss) / MB:.0f} MB"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# ---------------------------------------------------------------- many clients


def test_ten_clients_at_once(km) -> None:
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with_client = ExecClient.connect(km.connection_file)
            try:
                p = with_client.exec(["sh", "-c", f"for n in 1 2 3; do echo c{i}-$n; done"])
                results[i] = p.output(scaled(30)).stdout
                mine = {x.process_id for x in with_client.list()}
                assert p.process_id in mine
            finally:
                with_client.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    assert results == {i: f"c{i}-1\nc{i}-2\nc{i}-3\n".encode() for i in range(10)}


def test_closing_a_comm_leaves_processes_running(km) -> None:
    c = ExecClient.connect(km.connection_file)
    p = c.exec(["sleep", "30"], process_id="outlives-comm")
    c.close()
    c2 = ExecClient.connect(km.connection_file)
    try:
        info = {i.process_id: i for i in c2.list()}
        assert not info["outlives-comm"].exited and pid_alive(p.pid)
        c2.attach("outlives-comm").terminate(200)
    finally:
        c2.close()


# ---------------------------------------------------------------- no orphans


def _kernel_with_family() -> tuple[ExecClient, list[int]]:
    c = ExecClient.start()
    pids = []
    for tty in (False, True):
        p = c.exec(["sh", "-c", "sleep 1000 & echo $!; (trap '' HUP TERM; sleep 1000) & echo $!;"
                                " wait"], tty=tty)  # fmt: skip
        text = b""
        for chunk in p:
            text += chunk.data
            if text.count(b"\n") >= 2:
                break
        pids += [p.pid, *[int(x) for x in text.split()]]
    assert all(pid_alive(x) for x in pids)
    return c, pids


def test_shutdown_ends_every_process() -> None:
    c, pids = _kernel_with_family()
    c.close()  # shuts the kernel down (shutdown_request)
    wait_gone(pids, 2.0 + 2.0)


def test_restart_ends_every_process() -> None:
    c, pids = _kernel_with_family()
    try:
        import asyncio

        restart = c.kernel_manager.restart_kernel()  # an AsyncKernelManager's coroutine
        asyncio.run_coroutine_threadsafe(restart, c._runner.loop).result(60)
        wait_gone(pids, 4.0)
    finally:
        c.close()


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_kernel_killed_leaves_no_process(signum: int) -> None:
    c, pids = _kernel_with_family()
    try:
        kernel_pid = c.kernel_manager.provisioner.process.pid
        os.kill(kernel_pid, signum)
        wait_gone(pids, 2.0)
    finally:
        c.close()


def test_kernel_manager_death_leaves_no_process(tmp_path) -> None:
    """The process that started the kernel dies: ipykernel's parent poller ends the kernel,
    and the watchdog ends the table."""
    script = tmp_path / "owner.py"
    script.write_text(
        "import sys, time\n"
        "from codex_exec_kernel.client import ExecClient\n"
        "c = ExecClient.start()\n"
        "p = c.exec(['sh', '-c', 'sleep 1000 & echo $!; wait'])\n"
        "print(p.pid, next(iter(p)).data.decode().strip(), flush=True)\n"
        "time.sleep(1000)\n"
    )
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(x) for x in owner.stdout.readline().split()]
        assert len(pids) == 2 and all(pid_alive(x) for x in pids)
        owner.kill()
        owner.wait(scaled(10))
        wait_gone(pids, 10.0)  # the kernel notices its parent's death within ~1 s
    finally:
        if owner.poll() is None:
            owner.kill()


def test_interrupt_reaches_an_awaiting_cell_at_once(km, kc) -> None:
    """set_wakeup_fd: SIGINT wakes the loop, so `await asyncio.sleep(30)` ends at once
    (a stock ipykernel only notices when the sleep's timer fires)."""
    msg_id = kc.execute("import asyncio\nprint('in-cell', flush=True)\nawait asyncio.sleep(30)")
    # Interrupt once the cell runs (ipykernel publishes `busy` before it installs the
    # cell's SIGINT handler; a SIGINT in between is ignored, as in any kernel).
    wait_until(lambda: _printed(kc, msg_id, "in-cell"), 10, message="the cell to run")
    t0 = time.monotonic()
    km.interrupt_kernel()
    while True:
        reply = kc.get_shell_msg(timeout=scaled(30))
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] in ("KeyboardInterrupt", "CancelledError")
    assert time.monotonic() - t0 < 2.0
