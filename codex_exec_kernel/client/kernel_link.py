"""Reaching the ``codex.exec`` comm of a kernel that runs elsewhere.

Two roads to one kernel, behind one small interface (:class:`KernelLink`):

* :class:`ZmqLink` — the kernel's own ZeroMQ sockets, from its connection file
  (what ``jupyter console --existing`` does), with jupyter_client's AsyncKernelClient.
* :class:`WebSocketLink` — a Jupyter server's REST API and kernel websocket: a plain
  Jupyter server, a JupyterHub user server behind the hub's proxy, or Kernel
  Gateway. It starts a kernel when given no id (and shuts it down on close unless
  told to keep it), and can reconnect a dropped websocket to the same kernel.

A link only moves comm messages: it opens a comm on the kernel's **control**
channel (served while a cell runs; our kernels accept ``codex.exec`` comms there),
sends JSON-RPC objects with binary buffers, and hands back what the kernel sends
on that comm. The protocol itself (handshake, flow control, refills) belongs to
the callers: the stdio relay (``codex-exec connect``) and the Python client.
"""

from __future__ import annotations

import asyncio
import json
import struct
import urllib.parse
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session

TARGET = "codex.exec"


class LinkError(Exception):
    """The kernel cannot be reached or used; the message is one line for a user."""


class LinkLost(LinkError):
    """The connection dropped while the kernel may still be alive: a reconnect may help."""


@dataclass
class LinkMessage:
    """What the kernel sent that a caller cares about.

    ``kind`` is ``"comm"`` (a message on our comm: ``data`` and ``buffers``),
    ``"closed"`` (the kernel closed our comm: it has no ``codex.exec`` target), or
    ``"idle"`` (the kernel finished handling the message whose id is ``parent_id``).
    """

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    buffers: list[bytes] = field(default_factory=list)
    parent_id: str = ""


class KernelLink(ABC):
    """One comm to one kernel's ``codex.exec`` target."""

    #: Whether :meth:`reconnect` can bring a dropped link back to the same kernel.
    can_reconnect = False

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        # The key only signs for us: a Jupyter server re-signs what it relays.
        self.session = Session(key=uuid.uuid4().hex.encode(), username="codex-exec-connect")
        self.comm_id = ""
        #: A one-line description of the kernel for messages (url and id, or file).
        self.where = ""

    # ------------------------------------------------------------------ for callers
    @abstractmethod
    async def start(self) -> None:
        """Reach the kernel (start one if asked) and wait until it answers."""

    def open_comm(self) -> str:
        """Open a new ``codex.exec`` comm (forgetting any previous one); its msg id."""
        self.comm_id = uuid.uuid4().hex
        return self._send("comm_open", {"comm_id": self.comm_id, "target_name": TARGET,
                                        "data": {}})  # fmt: skip

    def send(self, data: dict[str, Any], buffers: list[bytes] | None = None) -> str:
        """One protocol message on our comm; returns the Jupyter message id."""
        return self._send("comm_msg", {"comm_id": self.comm_id, "data": data}, buffers)

    def close_comm(self, comm_id: str | None = None) -> None:
        """Close our comm (or an older one of ours): the kernel drops its subscriptions."""
        try:
            self._send("comm_close", {"comm_id": comm_id or self.comm_id, "data": {}})
        except Exception:  # the link is already down: nothing to close
            pass

    async def receive(self) -> LinkMessage:
        """The next message that concerns our comm; raises :class:`LinkError` when the
        kernel is gone and :class:`LinkLost` when only the connection dropped."""
        while True:
            msg = await self._next_msg()
            found = self._classify(msg)
            if found is not None:
                return found

    async def call(self, data: dict[str, Any], grace: float = 2.0) -> dict[str, Any]:
        """Send one request on our comm and return its answer, reading the link directly
        (so only while nobody else reads it: when opening or reconnecting).

        A kernel without a ``codex.exec`` target on control never answers, but reports
        idle for our message: past ``grace`` seconds after that, it has no target.
        """
        jupyter_id = self.send(data)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        handled = False
        missing = (f"the kernel {self.where} has no codex.exec comm target (not a codex-exec "
                   "kernel: use --kernel-name codex-exec, or run %load_ext codex_exec_kernel "
                   "in it)")  # fmt: skip
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise LinkError(missing if handled else
                                f"the kernel {self.where} did not answer {data.get('method')}")
            try:
                found = await asyncio.wait_for(self.receive(), left)
            except asyncio.TimeoutError:
                continue
            if found.kind == "closed":
                raise LinkError(missing)
            if found.kind == "idle" and found.parent_id == jupyter_id and not handled:
                handled = True
                deadline = min(deadline, loop.time() + grace)
            if found.kind == "comm" and found.data.get("id") == data.get("id"):
                return found.data

    async def open_checked(self, grace: float = 2.0) -> None:
        """Open a comm and prove the kernel serves ``codex.exec`` on it (else LinkError).

        Any answer proves it: before a handshake every call is -32600 and changes nothing.
        """
        self.open_comm()
        probe = f"codex-exec-probe/{uuid.uuid4().hex}"
        await self.call({"jsonrpc": "2.0", "id": probe, "method": "process/list"}, grace)

    async def reconnect(self) -> None:
        raise LinkError(f"the connection to {self.where} was lost")

    @abstractmethod
    async def close(self) -> None:
        """Close the comm and the connection (and shut down a kernel we started)."""

    # ------------------------------------------------------------------ for links
    def _send(self, msg_type: str, content: dict[str, Any],
              buffers: list[bytes] | None = None) -> str:  # fmt: skip
        msg = self.session.msg(msg_type, content)
        self._send_msg(msg, list(buffers or []))
        return str(msg["header"]["msg_id"])

    @abstractmethod
    def _send_msg(self, msg: dict[str, Any], buffers: list[bytes]) -> None: ...

    @abstractmethod
    async def _next_msg(self) -> dict[str, Any]: ...

    def _classify(self, msg: dict[str, Any]) -> LinkMessage | None:
        msg_type = msg.get("header", {}).get("msg_type") or msg.get("msg_type")
        content = msg.get("content") or {}
        if msg_type == "comm_msg" and content.get("comm_id") == self.comm_id:
            data = content.get("data")
            buffers = [bytes(b) for b in msg.get("buffers") or []]
            return LinkMessage("comm", data if isinstance(data, dict) else {}, buffers)
        if msg_type == "comm_close" and content.get("comm_id") == self.comm_id:
            return LinkMessage("closed")
        if msg_type == "status":
            state = content.get("execution_state")
            if state == "idle":
                return LinkMessage("idle", parent_id=msg.get("parent_header", {}).get("msg_id", ""))
            if state in ("dead", "restarting", "starting"):
                # dead/restarting: from a Jupyter server's restarter; starting: a kernel
                # publishes it when it boots, so once we are connected it was restarted.
                # Either way the process table went with the old kernel.
                raise LinkError(f"the kernel {self.where} died or restarted ({state})")
        return None


# ---------------------------------------------------------------------------- ZeroMQ


class ZmqLink(KernelLink):
    """The kernel's ZeroMQ sockets, found through its connection file."""

    def __init__(self, connection_file: str, timeout: float = 30.0) -> None:
        super().__init__(timeout)
        self.connection_file = connection_file
        self.where = connection_file
        self.kc: Any = None

    async def start(self) -> None:
        from jupyter_client import find_connection_file
        from jupyter_client.asynchronous.client import AsyncKernelClient

        from .aio import AsyncExecClient

        try:
            path = find_connection_file(self.connection_file)
        except OSError as exc:
            raise LinkError(f"no connection file {self.connection_file!r}: {exc}")
        self.where = path
        kc = AsyncKernelClient()
        try:
            kc.load_connection_file(path)
        except (OSError, ValueError, KeyError) as exc:
            raise LinkError(f"cannot read connection file {path}: {exc}")
        self.kc = kc
        self.session = kc.session
        kc.start_channels()
        try:
            # Waits until control answers and IOPub delivers (the aio client's readiness).
            await AsyncExecClient(kc, timeout=self.timeout)._kernel_features()
        except TimeoutError:
            raise LinkError(f"the kernel of {path} did not answer within {self.timeout:g} s")

    def _send_msg(self, msg: dict[str, Any], buffers: list[bytes]) -> None:
        self.kc.session.send(self.kc.control_channel.socket, msg, buffers=buffers or None)

    async def _next_msg(self) -> dict[str, Any]:
        while True:
            try:
                return await self.kc.get_iopub_msg(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # queue.Empty: a quiet second; is the kernel still there?
                if not await self.kc.is_alive():
                    raise LinkError(f"the kernel of {self.where} stopped answering (heartbeat)")

    async def close(self) -> None:
        if self.kc is None:
            return
        if self.comm_id:
            self.close_comm()
        self.kc.stop_channels()
        self.kc = None


# ---------------------------------------------------------------------------- websocket


def serialize_binary(msg: dict[str, Any], buffers: list[bytes]) -> bytes:
    """jupyter_server's binary websocket frame: count, offsets, JSON, buffers."""
    parts = [json.dumps(msg, default=json_default).encode(), *buffers]
    offsets = [4 * (len(parts) + 1)]
    for part in parts[:-1]:
        offsets.append(offsets[-1] + len(part))
    return struct.pack(f"!{len(parts) + 1}I", len(parts), *offsets) + b"".join(parts)


def deserialize_binary(frame: bytes) -> dict[str, Any]:
    (count,) = struct.unpack("!I", frame[:4])
    offsets = [*struct.unpack(f"!{count}I", frame[4 : 4 * (count + 1)]), len(frame)]
    parts = [frame[offsets[i] : offsets[i + 1]] for i in range(count)]
    msg = json.loads(parts[0])
    msg["buffers"] = parts[1:]
    return msg


def split_url(url: str, token: str | None) -> tuple[str, str]:
    """``http://host:8888/lab?token=T`` → (``http://host:8888/``, ``T``).

    Accepts what Jupyter prints at start (a ``/lab`` or ``/tree`` page, token in
    the query) as well as a base URL (a JupyterHub user server's ``/user/NAME/``).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LinkError(f"not an http(s) URL: {url!r}")
    query = urllib.parse.parse_qs(parts.query)
    if token is None and query.get("token"):
        token = query["token"][0]
    path = parts.path
    for page in ("/lab", "/tree", "/notebooks"):
        if path.rstrip("/").endswith(page):
            path = path.rstrip("/")[: -len(page)]
    if not path.endswith("/"):
        path += "/"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", "")), token or ""


class WebSocketLink(KernelLink):
    """A kernel behind a Jupyter server (or JupyterHub, or Kernel Gateway)."""

    can_reconnect = True

    def __init__(
        self,
        url: str,
        token: str | None = None,
        kernel_id: str | None = None,
        kernel_name: str | None = None,
        keep_kernel: bool = False,
        timeout: float = 30.0,
        max_message_size: int = 256 * 1024 * 1024,
    ) -> None:
        super().__init__(timeout)
        self.base_url, self.token = split_url(url, token)
        self.kernel_id = kernel_id
        self.kernel_name = kernel_name
        self.keep_kernel = keep_kernel
        self.max_message_size = max_message_size
        self.started_kernel = False
        self.where = self.base_url
        self.ws: Any = None
        self._reading: asyncio.Future[Any] | None = None
        #: Seconds of silence after which the kernel's existence is checked (REST).
        self.quiet_check = 5.0
        self._session_id = uuid.uuid4().hex

    # ------------------------------------------------------------------ REST
    async def _rest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

        request = HTTPRequest(
            self.base_url + path, method=method, headers=self._headers(),
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
            connect_timeout=self.timeout, request_timeout=self.timeout,
        )  # fmt: skip
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except HTTPClientError as exc:  # pragma: no cover - raise_error=False
            raise LinkError(f"{self.base_url}: {exc}")
        except OSError as exc:
            raise LinkLost(f"cannot reach {self.base_url}: {exc.strerror or exc}")
        if response.code == 599:
            raise LinkLost(f"cannot reach {self.base_url}: {response.error}")
        if response.code in (401, 403):
            raise LinkError(f"{self.base_url} refused the token (HTTP {response.code} "
                            f"{response.reason}); pass --token or set JUPYTER_TOKEN")  # fmt: skip
        try:
            payload = json.loads(response.body) if response.body else None
        except ValueError:
            payload = None
        return response.code, payload

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    async def start(self) -> None:
        if self.kernel_id is None:
            body = {"name": self.kernel_name} if self.kernel_name else {}
            code, payload = await self._rest("POST", "api/kernels", body)
            if code >= 300 or not isinstance(payload, dict) or "id" not in payload:
                why = payload.get("message") if isinstance(payload, dict) else ""
                name = self.kernel_name or "(default)"
                raise LinkError(f"{self.base_url} could not start kernel {name}: "
                                f"HTTP {code} {why or ''}".rstrip())  # fmt: skip
            self.kernel_id = str(payload["id"])
            self.started_kernel = True
        else:
            await self._check_kernel()
        self.where = f"{self.kernel_id} at {self.base_url}"
        await self._connect()

    async def _check_kernel(self, gone: bool = False) -> None:
        """LinkError when the kernel does not exist (``gone``: it did a moment ago)."""
        assert self.kernel_id is not None
        kid = urllib.parse.quote(self.kernel_id, safe="")
        code, _ = await self._rest("GET", f"api/kernels/{kid}")
        if code == 404 and gone:
            self.started_kernel = False
            raise LinkError(f"the kernel {self.where} is gone (shut down or died)")
        if code == 404:
            raise LinkError(f"no kernel with id {self.kernel_id} at {self.base_url}")
        if code >= 300:
            raise LinkError(f"{self.base_url} answered HTTP {code} for kernel {self.kernel_id}")

    async def _connect(self) -> None:
        from tornado.httpclient import HTTPClientError, HTTPRequest
        from tornado.websocket import websocket_connect

        assert self.kernel_id is not None
        parts = urllib.parse.urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        kid = urllib.parse.quote(self.kernel_id, safe="")
        path = f"{parts.path}api/kernels/{kid}/channels"
        query = f"session_id={self._session_id}"
        url = urllib.parse.urlunsplit((scheme, parts.netloc, path, query, ""))
        request = HTTPRequest(url, headers=self._headers(), connect_timeout=self.timeout,
                              request_timeout=self.timeout)  # fmt: skip
        try:
            # Pings find a connection that died without a close (a half-open TCP).
            self.ws = await websocket_connect(request, max_message_size=self.max_message_size,
                                              ping_interval=10, ping_timeout=10)  # fmt: skip
        except HTTPClientError as exc:
            if exc.code in (401, 403):
                raise LinkError(f"{self.base_url} refused the token (HTTP {exc.code})")
            if exc.code == 404:
                raise LinkError(f"no kernel with id {self.kernel_id} at {self.base_url}")
            raise LinkLost(f"websocket to {self.where}: {exc}")
        except OSError as exc:
            raise LinkLost(f"cannot reach {self.base_url}: {exc.strerror or exc}")
        try:
            self.ws.protocol.stream.set_nodelay(True)  # keystroke echo: no Nagle delay
        except Exception:
            pass
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        """Ask kernel_info on control until it answers (the kernel may still be starting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while loop.time() < deadline:
            msg_id = self._send("kernel_info_request", {})
            try:
                while True:
                    left = min(2.0, deadline - loop.time())
                    msg = await asyncio.wait_for(self._next_msg(), max(left, 0.01))
                    if (msg.get("header", {}).get("msg_type") == "kernel_info_reply"
                            and msg.get("parent_header", {}).get("msg_id") == msg_id):  # fmt: skip
                        return
            except asyncio.TimeoutError:
                continue
        raise LinkError(f"the kernel {self.where} did not answer within {self.timeout:g} s")

    async def reconnect(self) -> None:
        """A new websocket to the same kernel, if it still exists (else :class:`LinkError`)."""
        self._drop_ws()
        await self._check_kernel(gone=True)
        await self._connect()

    # ------------------------------------------------------------------ frames
    def _send_msg(self, msg: dict[str, Any], buffers: list[bytes]) -> None:
        from tornado.websocket import WebSocketClosedError

        if self.ws is None:
            raise LinkLost(f"not connected to {self.where}")
        msg["channel"] = "control"
        try:
            if buffers:
                self.ws.write_message(serialize_binary(msg, buffers), binary=True)
            else:
                self.ws.write_message(json.dumps(msg, default=json_default))
        except WebSocketClosedError:
            raise LinkLost(f"the websocket to {self.where} is closed")

    async def _next_msg(self) -> dict[str, Any]:
        if self.ws is None:
            raise LinkLost(f"not connected to {self.where}")
        while True:
            # A server keeps the websocket open when it shuts the kernel down: after a
            # quiet while, ask the REST API whether the kernel still exists. (The read
            # stays pending across the check, so no frame is lost.)
            reading = self._read()
            done, _ = await asyncio.wait({reading}, timeout=self.quiet_check)
            if done:
                self._reading = None
                frame = reading.result()
                break
            await self._check_kernel(gone=True)
        if frame is None:
            raise LinkLost(f"the websocket to {self.where} was closed")
        if isinstance(frame, bytes):
            return deserialize_binary(frame)
        return json.loads(frame)

    def _read(self) -> asyncio.Future[Any]:
        """The pending read: kept across a quiet-check timeout, so no frame is lost."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self.ws.read_message())
        return self._reading

    def _drop_ws(self) -> None:
        self._reading = None
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    async def close(self) -> None:
        if self.ws is not None and self.comm_id:
            self.close_comm()
        self._drop_ws()
        if self.started_kernel and not self.keep_kernel and self.kernel_id:
            self.started_kernel = False
            kid = urllib.parse.quote(self.kernel_id, safe="")
            try:
                await self._rest("DELETE", f"api/kernels/{kid}")
            except LinkError:
                pass
