"""The asyncio client over a :class:`~.kernel_link.KernelLink` (a Jupyter server's
kernel websocket) instead of the kernel's own ZeroMQ sockets.

:class:`AsyncExecClient` speaks the protocol; only its transport differs here: the
comm is opened by the link (on the kernel's control channel, so a busy cell never
blocks it) and messages come from the link's receive loop. Reached through
``AsyncExecClient.connect_url`` / ``ExecClient.connect_url``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .aio import AsyncExecClient
from .errors import ConnectionClosed, ExecError
from .kernel_link import KernelLink, LinkError, WebSocketLink


class LinkedExecClient(AsyncExecClient):
    """An :class:`AsyncExecClient` whose comm travels over a :class:`KernelLink`."""

    def __init__(self, link: KernelLink, **kwargs: Any) -> None:
        super().__init__(None, **kwargs)  # type: ignore[arg-type]
        self.link = link

    @classmethod
    async def over_url(
        cls,
        url: str,
        token: str | None = None,
        kernel_id: str | None = None,
        kernel_name: str = "codex-exec",
        keep_kernel: bool = False,
        **kwargs: Any,
    ) -> LinkedExecClient:
        timeout = float(kwargs.get("timeout", 30.0))
        link = WebSocketLink(url, token, kernel_id=kernel_id, kernel_name=kernel_name,
                             keep_kernel=keep_kernel, timeout=timeout)  # fmt: skip
        client = cls(link, **kwargs)
        try:
            await client.open()
        except BaseException:
            await link.close()
            raise
        return client

    @property
    def kernel_id(self) -> str | None:
        return getattr(self.link, "kernel_id", None)

    async def open(self) -> None:
        try:
            await self.link.start()
            await self.link.open_checked()
        except LinkError as exc:
            raise ExecError(0, str(exc)) from None
        self._route = "link"
        self._reader = asyncio.create_task(self._read_link())
        self.server_info = await self.request(
            "initialize", {"clientName": self.client_name, "flowControl": self.flow_control}
        )
        self.notify("initialized", {})

    def _send(self, msg_type: str, content: dict[str, Any],
              buffers: list[bytes] | None = None) -> None:  # fmt: skip
        if msg_type != "comm_msg":
            raise ValueError(f"a linked client sends only comm messages, not {msg_type}")
        try:
            self.link.send(content["data"], buffers)
        except LinkError as exc:
            raise ConnectionClosed(str(exc)) from None

    async def _read_link(self) -> None:
        reason = "the comm was closed"
        try:
            while True:
                found = await self.link.receive()
                if found.kind == "comm":
                    self._dispatch(found.data, found.buffers)
                elif found.kind == "closed":
                    break
        except LinkError as exc:
            reason = str(exc)
        finally:
            self._fail_pending(reason)

    async def close(self, shutdown_kernel: bool | None = None) -> None:
        """Close the comm; shut down a kernel we started (unless ``keep_kernel``)."""
        if self._closed:
            return
        self._closed = True
        await self._stop_tasks()
        if shutdown_kernel is not None and isinstance(self.link, WebSocketLink):
            self.link.keep_kernel = not shutdown_kernel
            self.link.started_kernel = self.link.started_kernel or shutdown_kernel
        await self.link.close()
