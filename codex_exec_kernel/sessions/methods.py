"""The ``session/*`` protocol methods, registered on a :class:`Dispatcher`.

Each handler validates its params completely first (``-32602``), then looks the
session up (unknown id: ``-32600``). Blocking work (starting a supervisor, waiting
for a deleted group to end) runs in a worker thread so the table's loop, which
also carries every other process's output, never stalls.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from ..dispatcher import ConnectionState, Dispatcher, Reply
from ..protocol import (
    SESSION_PROCESS_PREFIX,
    NoParams,
    SessionAttachParams,
    SessionCreateParams,
    SessionDeleteParams,
    SessionLogsParams,
    SessionSignalParams,
    encode_bytes,
    invalid_request,
)
from .api import SessionManager
from .attached import attach_backend
from .config import SessionConfig
from .store import SessionError, SessionExists, SessionNotFound

#: A ``session/*`` handler: typed params in, a result or :class:`Reply` out.
Handler = Callable[[ConnectionState, Any], Awaitable[Any]]


def process_id_of(session_id: str) -> str:
    """The process-table name of an attached session (a prefix nobody else may use)."""
    return f"{SESSION_PROCESS_PREFIX}{session_id}"


class SessionMethods:
    """The handlers, sharing one :class:`SessionManager` (its config, its home)."""

    def __init__(self, config: SessionConfig | None = None) -> None:
        self.manager = SessionManager(config)

    def _known(self, session_id: str) -> None:
        try:
            self.manager.get(session_id)
        except SessionNotFound:
            raise invalid_request(f"unknown session id {session_id!r}") from None

    async def create(self, ctx: ConnectionState, params: SessionCreateParams) -> dict[str, Any]:
        table = ctx.table
        table.check_spec(params.spec)
        try:
            # The kernel's environment and current directory (kernelenv.py), taken now.
            info = await asyncio.to_thread(
                self.manager.create, params.spec, session_id=params.session_id,
                base_env=table.child_base_env(), default_cwd=table.child_cwd(),
            )  # fmt: skip
        except SessionExists as exc:
            raise invalid_request(str(exc)) from None
        return {"id": info.id, "pid": info.meta.pid}

    async def list(self, ctx: ConnectionState, params: NoParams) -> dict[str, Any]:
        infos = await asyncio.to_thread(self.manager.list)
        return {"sessions": [info.to_json() for info in infos]}

    async def attach(self, ctx: ConnectionState, params: SessionAttachParams) -> dict[str, Any]:
        session_id = params.session_id
        self._known(session_id)
        table = ctx.table
        pid = process_id_of(session_id)
        existing = table.get(pid)
        if existing is not None:
            if not existing.closed:
                raise invalid_request(
                    f"session {session_id!r} is already attached as process {pid!r}"
                )
            table.remove(existing)  # a detached entry still retained: make room
        try:
            backend = await attach_backend(
                self.manager.store, session_id, params.from_offset,
                self.manager.config.attach_tail_bytes,
            )  # fmt: skip
        except SessionNotFound:  # deleted meanwhile
            raise invalid_request(f"unknown session id {session_id!r}") from None
        meta = backend.client.meta
        try:
            table.adopt(
                pid, backend, argv=list(meta.argv) if meta else [], cwd=meta.cwd if meta else "",
                tty=backend.tty, title=f"session {session_id}", owner=ctx,
            )  # fmt: skip
        except BaseException:
            backend.close()
            raise
        return {"processId": pid}

    async def logs(self, ctx: ConnectionState, params: SessionLogsParams) -> Reply:
        self._known(params.session_id)
        chunk = await asyncio.to_thread(
            self.manager.read_log_raw, params.session_id, params.offset,
            min(params.max_bytes, self.manager.config.max_log_chunk),
        )  # fmt: skip
        out: list[bytes] | None = [] if ctx.binary else None
        result = {
            "chunk": encode_bytes(chunk.data, out),
            "offset": chunk.offset,
            "nextOffset": chunk.next_offset,
            "size": chunk.size,
        }
        return Reply(result, out)

    async def signal(self, ctx: ConnectionState, params: SessionSignalParams) -> dict[str, Any]:
        self._known(params.session_id)
        await asyncio.to_thread(self.manager.signal, params.session_id, params.signum)
        return {}

    async def delete(self, ctx: ConnectionState, params: SessionDeleteParams) -> dict[str, Any]:
        self._known(params.session_id)
        grace = self.manager.config.delete_grace
        if params.grace_ms is not None:
            grace = params.grace_ms / 1000
        try:
            await asyncio.to_thread(self.manager.delete, params.session_id, grace)
        except SessionNotFound:
            raise invalid_request(f"unknown session id {params.session_id!r}") from None
        return {}

    def routes(self) -> dict[str, tuple[Any, Handler]]:
        return {
            method: (params, _session_errors_are_requests(handler))
            for method, (params, handler) in {
                "session/create": (SessionCreateParams, self.create),
                "session/list": (NoParams, self.list),
                "session/attach": (SessionAttachParams, self.attach),
                "session/logs": (SessionLogsParams, self.logs),
                "session/signal": (SessionSignalParams, self.signal),
                "session/delete": (SessionDeleteParams, self.delete),
            }.items()
        }


def _session_errors_are_requests(handler: Handler) -> Handler:
    """A refused store, a corrupt or unreachable session → ``-32600`` with its one-line
    message (not an internal error with a traceback in the server's log)."""

    @functools.wraps(handler)
    async def wrapped(ctx: ConnectionState, params: Any) -> Any:
        try:
            return await handler(ctx, params)
        except SessionError as exc:
            raise invalid_request(str(exc)) from None

    return wrapped


def register_session_methods(dispatcher: Dispatcher, config: SessionConfig | None = None) -> None:
    """Add every ``session/*`` method to ``dispatcher`` (see ``server.build_server``)."""
    for method, (params, handler) in SessionMethods(config).routes().items():
        dispatcher.register(method, params, handler)
