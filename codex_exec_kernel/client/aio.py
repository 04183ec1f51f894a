"""The asyncio client: the one implementation (the sync client drives it from a thread).

It speaks the protocol over a ``codex.exec`` comm built from raw Jupyter messages
(jupyter_client has no comm API). It opens the comm on a kernel subshell when the
kernel has them, else on the control channel, so a busy cell never blocks it; it
says ``flowControl: true`` and acknowledges output when the caller consumes it, so
neither a flood nor a caller that stops reading grows the kernel's memory or its
own; and it delivers each process's events strictly in seq order, refilling any
gap with ``process/read``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

from ..protocol import COMM_TARGET, decode_bytes
from .errors import ConnectionClosed, ExecError, error_from_json
from .models import Chunk, Output, ProcessInfo

_END = object()


class AsyncProcess:
    """A handle on one process of the kernel's table."""

    def __init__(
        self, client: AsyncExecClient, process_id: str, pid: int | None, after_seq: int = 0
    ):
        self.client = client
        self.process_id = process_id
        self.pid = pid
        self.exit_code: int | None = None
        self.signal: str | None = None
        self.exited = asyncio.Event()
        self.closed = asyncio.Event()
        #: Set when output was evicted before we could read it: the first seq still held.
        self.lost_before_seq: int | None = None
        self._expected = after_seq + 1
        self._held: dict[int, tuple[str, dict[str, Any], list[bytes]]] = {}
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._refilling = False

    # ------------------------------------------------------------------ events in
    def _on_event(self, method: str, params: dict[str, Any], buffers: list[bytes]) -> None:
        seq = params.get("seq", 0)
        if seq < self._expected:
            return  # a duplicate (refill and live notification crossed)
        if seq > self._expected:
            self._held[seq] = (method, params, buffers)
            if not self._refilling:
                self._refilling = True
                self.client._spawn(self._refill())
            return
        self._apply(method, params, buffers)
        while self._expected in self._held:
            self._apply(*self._held.pop(self._expected))

    def _apply(self, method: str, params: dict[str, Any], buffers: list[bytes]) -> None:
        seq = params["seq"]
        self._expected = seq + 1
        if method == "process/output":
            chunk = Chunk(seq, params["stream"], decode_bytes(params["chunk"], buffers))
            self._queue.put_nowait(chunk)  # acknowledged when the caller takes it
        elif method == "process/exited":
            self.exit_code = params.get("exitCode")
            self.signal = params.get("signal")
            self.exited.set()
        elif method == "process/closed":
            self.closed.set()
            self._queue.put_nowait(_END)

    async def _refill(self) -> None:
        """Fetch the events between what we have and what arrived, then release the rest."""
        try:
            while self._held and min(self._held) > self._expected:
                after = self._expected - 1
                result = await self.read(after_seq=after)
                if result["firstRetainedSeq"] > self._expected:
                    self.lost_before_seq = result["firstRetainedSeq"]
                for c in result["chunks"]:
                    if c["seq"] >= self._expected:
                        self._apply("process/output", {**c}, result["_buffers"])
                target = min(self._held)
                if self._expected < target:
                    # What is still missing is not output (an exit event) or was evicted:
                    # take the process's state from the read and move on.
                    if result["exited"] and not self.exited.is_set():
                        self.exit_code = result["exitCode"]
                        self.exited.set()
                    self._expected = target
                while self._expected in self._held:
                    self._apply(*self._held.pop(self._expected))
        finally:
            self._refilling = False

    # ------------------------------------------------------------------ output
    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Chunk]:
        while True:
            item = await self._queue.get()
            if item is _END:
                self._queue.put_nowait(_END)  # later iterations end at once too
                return
            # Acknowledge on consumption, not arrival: a caller that does not read holds
            # the child at the flow-control window, and this queue stays that small.
            self.client._ack(self.process_id, item.seq)
            yield item

    async def output(self, timeout: float | None = None) -> Output:
        """Gather all output until the process is closed."""
        out = Output()

        async def gather() -> None:
            async for chunk in self:
                out.chunks.append(chunk)
                setattr(out, chunk.stream, getattr(out, chunk.stream) + chunk.data)

        await asyncio.wait_for(gather(), timeout)
        out.exit_code, out.signal = self.exit_code, self.signal
        return out

    async def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the exit; returns the exit code (128+n when a signal ended it).

        Output nobody consumes holds the process at the flow-control window (4 MiB by
        default), as a terminal nobody reads would: iterate it, or use :meth:`output`."""
        await asyncio.wait_for(self.exited.wait(), timeout)
        return self.exit_code

    # ------------------------------------------------------------------ control
    async def write(self, data: bytes | str, write_id: str | None = None) -> str:
        if isinstance(data, str):
            data = data.encode()
        params: dict[str, Any] = {"processId": self.process_id, "chunk": {"buffer": 0}}
        if write_id is not None:
            params["writeId"] = write_id
        result = await self.client.request("process/write", params, buffers=[data])
        return result["status"]

    async def close_stdin(self) -> str:
        return (await self.client.request("process/closeStdin", {"processId": self.process_id}))[
            "status"
        ]

    async def resize(self, rows: int, cols: int) -> None:
        await self.client.request(
            "process/resize", {"processId": self.process_id, "rows": rows, "cols": cols}
        )

    async def send_signal(self, name: str) -> None:
        """Send a signal by protocol name (``interrupt``, ``kill``...) to the process group."""
        await self.client.request("process/signal", {"processId": self.process_id, "signal": name})

    async def terminate(self, grace_ms: int = 2000) -> bool:
        result = await self.client.request(
            "process/terminate", {"processId": self.process_id, "graceMs": grace_ms}
        )
        return bool(result["running"])

    async def read(
        self, after_seq: int = 0, max_bytes: int | None = None, wait_ms: int = 0
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"processId": self.process_id, "afterSeq": after_seq,
                                  "waitMs": wait_ms}  # fmt: skip
        if max_bytes is not None:
            params["maxBytes"] = max_bytes
        result, buffers = await self.client.request_with_buffers("process/read", params)
        result["_buffers"] = buffers
        for c in result["chunks"]:
            c["data"] = decode_bytes(c["chunk"], buffers)
        return result


class AsyncExecClient:
    """Drive a kernel's process table from asyncio code.

    >>> async with await AsyncExecClient.start() as client:   # starts a codex-exec kernel
    ...     proc = await client.exec(["echo", "hi"])
    ...     out = await proc.output()
    """

    def __init__(
        self,
        kernel_client: AsyncKernelClient,
        *,
        channel: str = "auto",
        flow_control: bool = True,
        manager: AsyncKernelManager | None = None,
        client_name: str = "codex_exec_kernel.client",
        timeout: float = 30.0,
    ) -> None:
        if channel not in ("auto", "subshell", "control", "shell"):
            raise ValueError("channel must be auto, subshell, control or shell")
        self.kc = kernel_client
        self.km = manager
        self.channel = channel
        self.flow_control = flow_control
        self.client_name = client_name
        self.timeout = timeout
        self.comm_id = uuid.uuid4().hex
        self.subshell_id: str | None = None
        self.server_info: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[tuple[Any, list[bytes]]]] = {}
        self._processes: dict[str, AsyncProcess] = {}
        self._early: dict[str, list[tuple[str, dict[str, Any], list[bytes]]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    # ------------------------------------------------------------------ construction
    @classmethod
    async def start(cls, kernel_name: str = "codex-exec", **kwargs: Any) -> AsyncExecClient:
        """Start a new kernel (ended again by :meth:`close`) and connect to it."""
        km = AsyncKernelManager(kernel_name=kernel_name)
        await km.start_kernel()
        kc = km.client()
        client = cls(kc, manager=km, **kwargs)
        try:
            await client.open()
        except BaseException:
            await km.shutdown_kernel(now=True)
            raise
        return client

    @classmethod
    async def connect(cls, connection_file: str, **kwargs: Any) -> AsyncExecClient:
        """Connect to a running kernel through its connection file."""
        kc = AsyncKernelClient()
        kc.load_connection_file(connection_file)
        client = cls(kc, **kwargs)
        await client.open()
        return client

    @classmethod
    async def connect_url(cls, url: str, *args: Any, **kwargs: Any) -> AsyncExecClient:
        """Reach a kernel through a Jupyter server (or JupyterHub, or Kernel Gateway):
        its REST API and kernel websocket. The parameters are
        :meth:`LinkedExecClient.over_url`'s (``token``, ``kernel_id``, ``kernel_name``,
        ``keep_kernel``, then this class's options): it starts a ``kernel_name`` kernel
        when no ``kernel_id`` is given, shut down again by :meth:`close` unless
        ``keep_kernel``."""
        from .linked import LinkedExecClient

        return await LinkedExecClient.over_url(url, *args, **kwargs)

    async def open(self) -> None:
        self.kc.start_channels()
        features = await self._kernel_features()
        if self.channel in ("auto", "subshell") and "kernel subshells" in features:
            self.subshell_id = await self._create_subshell()
            self._route = "subshell"
        elif self.channel == "subshell":
            raise ExecError(0, "the kernel does not support subshells")
        else:
            self._route = "control" if self.channel in ("auto", "control") else "shell"
        self._reader = asyncio.create_task(self._read_iopub())
        self._send("comm_open", {"comm_id": self.comm_id, "target_name": COMM_TARGET, "data": {}})
        self.server_info = await self.request(
            "initialize", {"clientName": self.client_name, "flowControl": self.flow_control}
        )
        self.notify("initialized", {})

    async def _kernel_features(self) -> list[str]:
        """Ask on the control channel: the shell may be busy with a cell for a long time.

        Also serves as ``wait_for_ready``: a kernel still starting gets asked again.
        """
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            msg = self.kc.session.msg("kernel_info_request", {})
            self.kc.control_channel.send(msg)
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise TimeoutError("the kernel did not answer kernel_info on control")
                try:
                    reply = await self.kc.get_control_msg(timeout=min(1.0, left))
                except Exception:  # queue.Empty: ask again
                    break
                if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                    if await self._iopub_is_live(min(1.0, left)):
                        return list(reply["content"].get("supported_features", []))
                    break  # IOPub not subscribed yet (slow joiner): ask again

    async def _iopub_is_live(self, timeout: float) -> bool:
        """True once IOPub delivers: the kernel publishes busy/idle for every control request.

        A message published before our subscription reaches the kernel is lost for us,
        so nothing may be sent that expects an IOPub answer until this is true.
        """
        try:
            await self.kc.get_iopub_msg(timeout=timeout)
        except Exception:
            return False
        while True:  # drain the rest of the startup chatter
            try:
                await self.kc.get_iopub_msg(timeout=0.05)
            except Exception:
                return True

    async def _create_subshell(self) -> str:
        msg = self.kc.session.msg("create_subshell_request", {})
        self.kc.control_channel.send(msg)
        while True:
            reply = await self.kc.get_control_msg(timeout=self.timeout)
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                return reply["content"]["subshell_id"]

    async def __aenter__(self) -> AsyncExecClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self, shutdown_kernel: bool | None = None) -> None:
        """Close the comm (processes go on in the kernel); shut down a kernel we started."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            # On control (which our kernels serve for codex.exec comms): a comm_close
            # on the subshell could still be queued when the subshell is deleted below.
            msg = self.kc.session.msg("comm_close", {"comm_id": self.comm_id, "data": {}})
            self.kc.session.send(self.kc.control_channel.socket, msg)
        if self.subshell_id is not None:
            with contextlib.suppress(Exception):
                msg = self.kc.session.msg("delete_subshell_request",
                                          {"subshell_id": self.subshell_id})  # fmt: skip
                self.kc.control_channel.send(msg)
        await self._stop_tasks()
        self.kc.stop_channels()
        if self.km is not None and (shutdown_kernel is None or shutdown_kernel):
            await self.km.shutdown_kernel()

    # ------------------------------------------------------------------ transport
    def _send(
        self, msg_type: str, content: dict[str, Any], buffers: list[bytes] | None = None
    ) -> None:
        msg = self.kc.session.msg(msg_type, content)
        if self._route == "subshell":
            msg["header"]["subshell_id"] = self.subshell_id
            socket = self.kc.shell_channel.socket
        elif self._route == "control":
            socket = self.kc.control_channel.socket
        else:
            socket = self.kc.shell_channel.socket
        self.kc.session.send(socket, msg, buffers=buffers or None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_iopub(self) -> None:
        try:
            while True:
                msg = await self.kc.get_iopub_msg()
                if msg["header"]["msg_type"] != "comm_msg":
                    if msg["header"]["msg_type"] == "comm_close" and (
                        msg["content"].get("comm_id") == self.comm_id
                    ):
                        break
                    continue
                content = msg["content"]
                if content.get("comm_id") != self.comm_id:
                    continue
                data = content.get("data") or {}
                buffers = [bytes(b) for b in msg.get("buffers") or []]
                self._dispatch(data, buffers)
        except asyncio.CancelledError:
            raise
        finally:
            self._fail_pending("the comm was closed")

    async def _stop_tasks(self) -> None:
        """Closing, for every transport: the reader and helper tasks end, and every
        request still waiting fails with :class:`ConnectionClosed`."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        for task in list(self._tasks):
            task.cancel()
        self._fail_pending("client closed")

    def _fail_pending(self, reason: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionClosed(reason))

    def _dispatch(self, data: dict[str, Any], buffers: list[bytes]) -> None:
        if "method" in data:
            params = data.get("params") or {}
            process_id = params.get("processId", "")
            proc = self._processes.get(process_id)
            if proc is not None:
                proc._on_event(data["method"], params, buffers)
            elif len(self._early) < 64:
                # Output can overtake the coroutine that awaits process/start's reply:
                # keep it until that coroutine registers the handle.
                self._early.setdefault(process_id, []).append((data["method"], params, buffers))
            return
        fut = self._pending.pop(data.get("id"), None)
        if fut is None or fut.done():
            return
        if "error" in data:
            fut.set_exception(error_from_json(data["error"]))
        else:
            fut.set_result((data.get("result"), buffers))

    # ------------------------------------------------------------------ rpc
    async def request_with_buffers(
        self, method: str, params: Any = None, buffers: list[bytes] | None = None,
        timeout: float | None = None,
    ) -> tuple[Any, list[bytes]]:  # fmt: skip
        if self._closed:
            raise ConnectionClosed("client closed")
        msg_id = next(self._ids)
        fut: asyncio.Future[tuple[Any, list[bytes]]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        data: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            data["params"] = params
        self._send("comm_msg", {"comm_id": self.comm_id, "data": data}, buffers)
        try:
            return await asyncio.wait_for(fut, timeout or self.timeout)
        finally:
            self._pending.pop(msg_id, None)

    async def request(self, method: str, params: Any = None, buffers: list[bytes] | None = None,
                      timeout: float | None = None) -> Any:  # fmt: skip
        """Call a protocol method; errors raise a typed :class:`ExecError`."""
        result, _ = await self.request_with_buffers(method, params, buffers, timeout)
        return result

    def notify(self, method: str, params: Any = None) -> None:
        data: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            data["params"] = params
        self._send("comm_msg", {"comm_id": self.comm_id, "data": data})

    def _ack(self, process_id: str, seq: int) -> None:
        if self.flow_control and not self._closed:
            self.notify("process/ack", {"processId": process_id, "seq": seq})

    # ------------------------------------------------------------------ processes
    async def exec(
        self,
        argv: list[str],
        *,
        tty: bool = False,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        env_policy: dict[str, Any] | None = None,
        pipe_stdin: bool = False,
        size: tuple[int, int] | None = None,
        process_id: str | None = None,
        title: str | None = None,
        arg0: str | None = None,
    ) -> AsyncProcess:
        """Start a process in the kernel's table and follow its output."""
        params: dict[str, Any] = {"argv": list(argv), "tty": tty, "pipeStdin": pipe_stdin}
        for key, value in (
            ("cwd", cwd),
            ("env", env),
            ("envPolicy", env_policy),
            ("processId", process_id),
            ("title", title),
            ("arg0", arg0),
        ):
            if value is not None:
                params[key] = value
        if size is not None:
            params["size"] = {"rows": size[0], "cols": size[1]}
        result = await self.request("process/start", params)
        return self._register(AsyncProcess(self, result["processId"], result["pid"]))

    def _register(self, proc: AsyncProcess) -> AsyncProcess:
        self._processes[proc.process_id] = proc
        for event in self._early.pop(proc.process_id, []):
            proc._on_event(*event)
        return proc

    async def attach(self, process_id: str, after_seq: int = 0) -> AsyncProcess:
        """Follow an existing process: replay what is retained after ``after_seq``, then live."""
        proc = AsyncProcess(self, process_id, None, after_seq=after_seq)
        self._early.pop(process_id, None)
        self._processes[process_id] = proc
        await self.request("process/subscribe", {"processId": process_id, "afterSeq": after_seq})
        for info in await self.list():
            if info.process_id == process_id:
                proc.pid = info.pid
        return proc

    async def list(self) -> list[ProcessInfo]:
        result = await self.request("process/list")
        return [ProcessInfo.from_json(p) for p in result["processes"]]

    async def run(self, argv: list[str], timeout: float | None = None, **kwargs: Any) -> Output:
        """Start a process and gather all its output until it is closed."""
        proc = await self.exec(argv, **kwargs)
        return await proc.output(timeout)
