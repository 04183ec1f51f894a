"""Test helpers for kernels: start real ones with jupyter_client, speak raw comm messages."""

from __future__ import annotations

import contextlib
import itertools
import queue
import time
import uuid
from collections.abc import Iterator
from typing import Any

from jupyter_client import BlockingKernelClient, KernelManager
from waiting import scaled


def start_kernel(name: str = "codex-exec", **kw: Any) -> KernelManager:
    return wait_started(KernelManager(kernel_name=name), **kw)


def wait_started(km: KernelManager, **kw: Any) -> KernelManager:
    """Start ``km``'s kernel and wait until it answers (its heartbeat beats)."""
    km.start_kernel(**kw)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=scaled(60))
    kc.stop_channels()
    return km


def ready_client(km: KernelManager) -> BlockingKernelClient:
    """The kernel manager's own client, channels started, the kernel answering."""
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    return kc


@contextlib.contextmanager
def running_kernel(name: str = "codex-exec", **kw: Any) -> Iterator[BlockingKernelClient]:
    """A started kernel and a ready client; both end on exit."""
    km = start_kernel(name, **kw)
    kc = ready_client(km)
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def blocking_client(km: KernelManager) -> BlockingKernelClient:
    kc = BlockingKernelClient()
    kc.load_connection_file(km.connection_file)
    kc.start_channels()
    kc.wait_for_ready(timeout=scaled(30))
    return kc


class RawComm:
    """A codex.exec comm driven by hand: no client library between the test and the kernel."""

    def __init__(self, kc: BlockingKernelClient, route: str = "control",
                 subshell_id: str | None = None, handshake: bool = True,
                 flow_control: bool = False) -> None:  # fmt: skip
        self.kc = kc
        self.route = route
        self.subshell_id = subshell_id
        self.comm_id = uuid.uuid4().hex
        self.ids = itertools.count(1)
        self.notes: list[dict[str, Any]] = []
        self.responses: dict[Any, tuple[dict[str, Any], list[bytes]]] = {}
        self.note_buffers: list[list[bytes]] = []
        self.send("comm_open", {"comm_id": self.comm_id, "target_name": "codex.exec", "data": {}})
        if handshake:
            self.request("initialize", {"clientName": "raw", "flowControl": flow_control})
            self.notify("initialized", {})

    def send(self, msg_type: str, content: dict[str, Any], buffers: list[bytes] | None = None
             ) -> None:  # fmt: skip
        msg = self.kc.session.msg(msg_type, content)
        if self.subshell_id:
            msg["header"]["subshell_id"] = self.subshell_id
        socket = self.kc.control_channel.socket if self.route == "control" else (
            self.kc.shell_channel.socket)
        self.kc.session.send(socket, msg, buffers=buffers)

    def send_data(self, data: Any, buffers: list[bytes] | None = None) -> None:
        self.send("comm_msg", {"comm_id": self.comm_id, "data": data}, buffers)

    def notify(self, method: str, params: Any = None) -> None:
        self.send_data({"method": method, "params": params or {}})

    def call(self, method: str, params: Any = None, buffers: list[bytes] | None = None,
             timeout: float = 20) -> tuple[dict[str, Any], list[bytes]]:  # fmt: skip
        msg_id = next(self.ids)
        data: dict[str, Any] = {"id": msg_id, "method": method}
        if params is not None:
            data["params"] = params
        self.send_data(data, buffers)
        return self.wait_response(msg_id, timeout)

    def request(self, method: str, params: Any = None, buffers: list[bytes] | None = None,
                timeout: float = 20) -> Any:  # fmt: skip
        reply, _ = self.call(method, params, buffers, timeout)
        assert "result" in reply, reply
        return reply["result"]

    def pump(self, timeout: float) -> bool:
        try:
            msg = self.kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return False
        if msg["header"]["msg_type"] == "comm_msg" and msg["content"]["comm_id"] == self.comm_id:
            data = msg["content"]["data"]
            buffers = [bytes(b) for b in msg.get("buffers") or []]
            if "method" in data:
                self.notes.append(data)
                self.note_buffers.append(buffers)
            else:
                self.responses[data.get("id")] = (data, buffers)
        return True

    def wait_response(self, msg_id: Any, timeout: float = 20) -> tuple[dict[str, Any], list[bytes]]:
        deadline = time.monotonic() + scaled(timeout)
        while msg_id not in self.responses:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no response to {msg_id}")
            self.pump(0.2)
        return self.responses.pop(msg_id)

    def wait_note(self, predicate: Any, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + scaled(timeout)
        seen = 0
        while True:
            for note in self.notes[seen:]:
                if predicate(note):
                    return note
            seen = len(self.notes)
            if time.monotonic() > deadline:
                raise TimeoutError("notification did not arrive")
            self.pump(0.2)

    def output_of(self, process_id: str) -> bytes:
        out = b""
        for note, bufs in zip(self.notes, self.note_buffers, strict=True):
            p = note["params"]
            if note["method"] == "process/output" and p["processId"] == process_id:
                out += bufs[p["chunk"]["buffer"]]
        return out


def reply_to(kc: BlockingKernelClient, msg_id: str, timeout: float = 30) -> dict[str, Any]:
    """The shell reply to ``msg_id`` (skipping replies to other requests)."""
    while True:
        msg = kc.get_shell_msg(timeout=scaled(timeout))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def create_subshell(kc: BlockingKernelClient) -> str:
    msg = kc.session.msg("create_subshell_request", {})
    kc.control_channel.send(msg)
    while True:
        reply = kc.get_control_msg(timeout=scaled(20))
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply["content"]["subshell_id"]
