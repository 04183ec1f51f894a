"""Background sessions through real kernels: they outlive the kernel that made them."""

from __future__ import annotations

import os
import signal
import time

import pytest
from kernel_helpers import blocking_client, reply_to, start_kernel
from waiting import pid_alive, scaled, wait_until

from codex_exec_kernel.client import ExecClient, InvalidParams

pytest_plugins = ["sessions_fixtures"]


def _kernel(home: str):
    env = dict(os.environ, CODEX_EXEC_HOME=home)
    return start_kernel(env=env)


@pytest.mark.parametrize("how", ["shutdown", "sigkill"])
def test_session_outlives_its_kernel_and_a_new_kernel_attaches(session_home: str, how: str
                                                               ) -> None:  # fmt: skip
    km = _kernel(session_home)
    try:
        with ExecClient.connect(km.connection_file) as client:
            created = client.request("session/create", {
                "id": f"long-{how}", "tty": True,
                "argv": ["sh", "-c", "echo started; while read line; do echo echo:$line; done"],
            })  # fmt: skip
            assert created["id"] == f"long-{how}" and created["pid"] > 0
    finally:
        if how == "shutdown":
            km.shutdown_kernel(now=False)
        else:
            os.kill(km.provisioner.process.pid, signal.SIGKILL)
            km.shutdown_kernel(now=True)
    assert pid_alive(created["pid"])  # the kernel is gone, the session is not

    km2 = _kernel(session_home)
    try:
        with ExecClient.connect(km2.connection_file) as client:
            (entry,) = [s for s in client.request("session/list")["sessions"]
                        if s["id"] == f"long-{how}"]  # fmt: skip
            assert entry["status"] == "running" and entry["pid"] == created["pid"]
            attached = client.request("session/attach", {"id": f"long-{how}", "fromOffset": 0})
            proc = client.attach(attached["processId"])
            seen = b""
            chunks = iter(proc)
            while b"started" not in seen:
                seen += next(chunks).data  # the whole log, from offset 0
            assert proc.write("hello\n") == "accepted"
            while b"echo:hello" not in seen:
                seen += next(chunks).data
            logs = client.request("session/logs", {"id": f"long-{how}"}, timeout=scaled(10))
            assert logs["size"] >= len(b"started")
            client.request("session/delete", {"id": f"long-{how}"})
        wait_until(lambda: not pid_alive(created["pid"]), 5)
    finally:
        km2.shutdown_kernel(now=True)


def test_magics_bg_sessions_survive_kernel(session_home: str) -> None:
    km = _kernel(session_home)
    kc = blocking_client(km)
    out: list[str] = []
    try:
        kc.execute_interactive("%exec --bg --id magic-bg sh -c 'echo from-bg; sleep 60'",
                               timeout=scaled(30),
                               output_hook=lambda m: out.append(str(m["content"])))
        assert any("magic-bg" in o for o in out)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    km2 = _kernel(session_home)
    kc2 = blocking_client(km2)
    try:
        shown: list[str] = []
        kc2.execute_interactive("%sessions", timeout=scaled(30),
                                output_hook=lambda m: shown.append(str(m["content"])))
        assert any("magic-bg" in s and "running" in s for s in shown)
        logs: list[str] = []
        kc2.execute_interactive("%logs magic-bg", timeout=scaled(30),
                                output_hook=lambda m: logs.append(m["content"].get("text", "")))
        assert "from-bg\n" in "".join(logs)
        reply = kc2.execute_interactive("%sessions --delete magic-bg", timeout=scaled(30))
        assert reply["content"]["status"] == "ok"
    finally:
        kc2.stop_channels()
        km2.shutdown_kernel(now=True)


def test_bad_session_ids_over_the_comm(session_home: str) -> None:
    km = _kernel(session_home)
    try:
        with ExecClient.connect(km.connection_file) as client:
            for bad in ("../x", "", "x" * 65, "has space"):
                with pytest.raises(InvalidParams):
                    client.request("session/create", {"id": bad, "argv": ["true"]})
            assert client.request("session/list")["sessions"] == []
    finally:
        km.shutdown_kernel(now=True)


def test_attach_magic_follows_until_interrupt_which_detaches(session_home: str) -> None:
    km = _kernel(session_home)
    kc = blocking_client(km)
    try:
        kc.execute_interactive(
            "%exec --bg --id ticker sh -c 'i=0; while :; do echo tick $i; i=$((i+1)); "
            "sleep 0.1; done'", timeout=scaled(30))  # fmt: skip
        shown: list[str] = []
        msg_id = kc.execute("%attach ticker")
        deadline = time.monotonic() + 20
        while "tick 3" not in "".join(shown):  # live output reaches the cell
            assert time.monotonic() < deadline, shown
            msg = kc.get_iopub_msg(timeout=scaled(10))
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                shown.append(msg["content"]["text"])
        km.interrupt_kernel()
        reply = reply_to(kc, msg_id)
        assert reply["content"]["status"] == "ok"  # interrupt detaches: not an error
        from codex_exec_kernel.sessions.api import SessionManager
        from codex_exec_kernel.sessions.config import SessionConfig

        info = SessionManager(SessionConfig(home=session_home)).get("ticker")
        assert info.status == "running"  # and the session goes on
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

