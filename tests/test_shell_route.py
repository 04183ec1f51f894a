"""The direct route (shellroute.py): ``codex.exec`` comm messages on the shell channel
are served by the shell-channel thread, with no subshell hop and no busy/idle status;
every other shell message keeps ipykernel's route."""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest
import test_kernel
from kernel_helpers import RawComm, blocking_client, create_subshell, start_kernel
from waiting import scaled, wait_until

#: The same fixtures as test_kernel.py (one kernel for this module).
km, kc = test_kernel.km, test_kernel.kc


@pytest.fixture(name="recorded")
def recorded_fixture(kc) -> tuple[list[str], list[dict[str, Any]]]:
    return recorded(kc)


def recorded(kc) -> tuple[list[str], list[dict[str, Any]]]:
    """(ids of the messages ``kc`` sends, every IOPub message ``kc`` reads)."""
    sent: list[str] = []
    seen: list[dict[str, Any]] = []
    send, get = kc.session.send, kc.get_iopub_msg

    def recording_send(*args: Any, **kwargs: Any) -> Any:
        msg = send(*args, **kwargs)
        sent.append(msg["header"]["msg_id"])
        return msg

    def recording_get(*args: Any, **kwargs: Any) -> Any:
        msg = get(*args, **kwargs)
        seen.append(msg)
        return msg

    kc.session.send, kc.get_iopub_msg = recording_send, recording_get
    return sent, seen


def pumped(comm: RawComm, condition: Any) -> Any:
    """A wait_until predicate: read one IOPub message (up to 0.1 s), then check."""

    def check() -> bool:
        comm.pump(0.1)
        return bool(condition())

    return check


def write(comm: RawComm, pid: str, data: bytes) -> None:
    """A process/write notification, as the panel sends a keystroke."""
    params = {"processId": pid, "chunk": {"buffer": 0}}
    comm.send_data({"method": "process/write", "params": params}, [data])


def _cat(comm: RawComm) -> str:
    pid = comm.request("process/start", {"argv": ["cat"], "tty": True})["processId"]
    return str(pid)


def comm_statuses(kc, recorded, subshell: bool) -> list[dict[str, Any]]:
    """Type 200 one-byte writes as notifications into ``cat``; check the echo holds them
    all, in order; return the busy/idle status messages published for our comm messages."""
    comm = RawComm(kc, route="shell", subshell_id=create_subshell(kc) if subshell else None)
    pid = _cat(comm)
    letters = "".join(chr(ord("a") + i % 26) for i in range(200))
    for ch in letters:
        write(comm, pid, ch.encode())
    wait_until(pumped(comm, lambda: letters in comm.output_of(pid).decode()), 20,
               message="every byte echoed")  # fmt: skip
    comm.request("process/terminate", {"processId": pid, "graceMs": 100})
    sent, seen = recorded
    ours = set(sent)
    # What answers a message names it as parent (clients match replies that way).
    parents = {m["parent_header"].get("msg_id") for m in seen
               if m["header"]["msg_type"] == "comm_msg"}  # fmt: skip
    assert parents <= ours
    return [m for m in seen if m["header"]["msg_type"] == "status"
            and m["parent_header"].get("msg_id") in ours
            and m["parent_header"].get("msg_type", "").startswith("comm_")]  # fmt: skip


@pytest.mark.parametrize("subshell", [False, True])
def test_writes_in_order_with_no_status_messages(km, kc, recorded, subshell: bool) -> None:
    """In order, every byte, and no busy/idle status for any of our comm messages."""
    assert comm_statuses(kc, recorded, subshell) == []


@pytest.fixture
def km_ipykernel_route():
    km = start_kernel(extra_arguments=["--CodexExecKernel.shell_channel_comms=False"])
    yield km
    km.shutdown_kernel(now=True)


def test_ipykernel_route_when_switched_off(km_ipykernel_route) -> None:
    """``shell_channel_comms = False``: ipykernel's own route (a subshell's busy/idle per
    message), with the same bytes in the same order."""
    kc = blocking_client(km_ipykernel_route)
    try:
        statuses = comm_statuses(kc, recorded(kc), subshell=True)
        assert {m["content"]["execution_state"] for m in statuses} == {"busy", "idle"}
    finally:
        kc.stop_channels()


def test_served_on_main_shell_while_a_cell_sleeps(km, kc) -> None:
    """No subshell at all: the main shell runs time.sleep(30), yet our comm (opened on
    the shell channel during the cell) starts a process and echoes at once."""
    kc.execute("import time; time.sleep(30)")
    wait_until(lambda: test_kernel._busy(kc), 10, message="the cell to start")
    try:
        t0 = time.monotonic()
        comm = RawComm(kc, route="shell")
        pid = _cat(comm)
        write(comm, pid, b"ping")
        wait_until(pumped(comm, lambda: b"ping" in comm.output_of(pid)), 10, message="the echo")
        assert time.monotonic() - t0 < scaled(5)
        comm.request("process/terminate", {"processId": pid, "graceMs": 100})
    finally:
        km.interrupt_kernel()


def test_other_comms_keep_ipykernel_route(km, kc) -> None:
    """A comm of another target is still served by ipykernel (busy/idle and all)."""
    code = (
        "def _open(comm, msg):\n"
        "    comm.on_msg(lambda m: comm.send({'back': m['content']['data']['x']}))\n"
        "get_ipython().kernel.comm_manager.register_target('test.echo', _open)\n"
    )
    reply = kc.execute(code, reply=True, timeout=scaled(30))
    assert reply["content"]["status"] == "ok"
    comm_id = "other-comm"
    for msg_type, content in (
        ("comm_open", {"comm_id": comm_id, "target_name": "test.echo", "data": {}}),
        ("comm_msg", {"comm_id": comm_id, "data": {"x": 42}}),
    ):
        msg = kc.session.msg(msg_type, content)
        kc.session.send(kc.shell_channel.socket, msg)
    sent = msg["header"]["msg_id"]
    seen: list[dict[str, Any]] = []

    def seen_one(predicate: Any) -> Any:
        def check() -> bool:
            try:
                seen.append(kc.get_iopub_msg(timeout=0.1))
            except queue.Empty:
                pass
            return any(predicate(m) for m in seen)

        return check

    wait_until(seen_one(lambda m: m["header"]["msg_type"] == "comm_msg"
                        and m["content"]["data"] == {"back": 42}), 20,
               message="the other comm's answer")  # fmt: skip
    wait_until(seen_one(lambda m: m["header"]["msg_type"] == "status"
                        and m["content"]["execution_state"] == "idle"
                        and m["parent_header"].get("msg_id") == sent), 20,
               message="idle for the other comm's message")  # fmt: skip


def _open_conns(kc) -> int:
    """How many comms the kernel's service keeps in its comm id → connection map."""
    expr = "len(get_ipython().kernel._codex_exec_service._conns)"
    reply = kc.execute("", user_expressions={"n": expr}, reply=True, timeout=scaled(30))
    return int(reply["content"]["user_expressions"]["n"]["data"]["text/plain"])


@pytest.mark.parametrize("route", ["shell", "control"])
def test_closed_comms_leave_the_route_map(km, kc, route: str) -> None:
    """A client's comm_close, on either route, drops the comm from the map the
    shell-channel route looks comms up in: 20 opened and closed comms leave none."""
    before = _open_conns(kc)
    for _ in range(20):
        comm = RawComm(kc, route=route)
        comm.request("process/list", {})
        comm.send("comm_close", {"comm_id": comm.comm_id, "data": {}})
    wait_until(lambda: _open_conns(kc) == before, 20, message="every closed comm forgotten")


def _write_frames(kc, comm: RawComm, pid: str, data: bytes) -> list[bytes]:
    """A signed process/write comm_msg for the shell socket, as raw frames."""
    params = {"processId": pid, "chunk": {"buffer": 0}}
    content = {"comm_id": comm.comm_id, "data": {"method": "process/write", "params": params}}
    frames = kc.session.serialize(kc.session.msg("comm_msg", content))
    return [*frames, data]


def test_route_checks_signatures_and_replays(km, kc) -> None:
    """The route reads messages itself (not through Session.deserialize), with the same
    checks: a wrong or missing HMAC is not served, nor is a replayed message; a good one
    after them is (so they would have been served first, had they been taken)."""
    comm = RawComm(kc, route="shell")
    pid = _cat(comm)
    shell = kc.shell_channel.socket
    wrong = _write_frames(kc, comm, pid, b"W")
    wrong[1] = b"0" * len(wrong[1])  # the signature frame follows the delimiter
    unsigned = _write_frames(kc, comm, pid, b"U")
    unsigned[1] = b""
    replayed = _write_frames(kc, comm, pid, b"R")
    for frames in (wrong, unsigned, replayed, replayed):
        shell.send_multipart(frames)
    shell.send_multipart(_write_frames(kc, comm, pid, b"OK"))
    wait_until(pumped(comm, lambda: b"OK" in comm.output_of(pid)), 20, message="the good write")
    echoed = comm.output_of(pid)
    assert b"W" not in echoed and b"U" not in echoed
    assert echoed.count(b"R") == 1, echoed
    comm.request("process/terminate", {"processId": pid, "graceMs": 100})
