"""The ``session/*`` protocol methods, registered on a :class:`Dispatcher`.

Each handler validates its params completely first (``-32602``), then looks the
session up (unknown id: ``-32600``). Blocking work (starting a supervisor, waiting
for a deleted group to end) runs in a worker thread so the table's loop, which
also carries every other process's output, never stalls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ..dispatcher import Reply
from ..protocol import (
    MAX_WAIT_MS,
    SpawnSpec,
    _Reader,
    encode_bytes,
    invalid_params,
    invalid_request,
    parse_signal,
)
from .api import SessionManager
from .attached import attach_backend
from .config import SessionConfig
from .store import InvalidSessionId, SessionExists, SessionNotFound, validate_id

MAX_LOG_CHUNK = 16 * 1024 * 1024
DEFAULT_LOG_CHUNK = 1024 * 1024
Buffers = Sequence[bytes | memoryview]
Handler = Callable[[Any, Any, Buffers], Coroutine[Any, Any, Any]]


def process_id_of(session_id: str) -> str:
    """The process-table name of an attached session."""
    return f"session:{session_id}"


def _session_id(r: _Reader, name: str = "id", *, required: bool = True) -> str | None:
    value = r.string(name, required=required)
    if value is None:
        return None
    try:
        return validate_id(value)
    except InvalidSessionId as exc:
        raise invalid_params(str(exc)) from None


class SessionMethods:
    """The handlers, sharing one :class:`SessionManager` (its config, its home)."""

    def __init__(self, config: SessionConfig | None = None) -> None:
        self.manager = SessionManager(config)

    def _known(self, session_id: str) -> None:
        try:
            self.manager.get(session_id)
        except SessionNotFound:
            raise invalid_request(f"unknown session id {session_id!r}") from None

    async def create(self, ctx: Any, params: Any, buffers: Buffers) -> dict[str, Any]:
        r = _Reader(params)
        spec = SpawnSpec.read(r)
        session_id = _session_id(r, required=False)
        table = ctx.table
        base = table.child_base_env()
        cwd = spec.cwd or table.child_cwd()
        try:
            info = await asyncio.to_thread(
                self.manager.create, spec.argv, session_id=session_id, cwd=cwd, env=spec.env,
                env_policy=spec.env_policy, tty=spec.tty, size=spec.size, arg0=spec.arg0,
                base_env=dict(base),
            )  # fmt: skip
        except SessionExists as exc:
            raise invalid_request(str(exc)) from None
        return {"id": info.id, "pid": info.meta.pid}

    async def list(self, ctx: Any, params: Any, buffers: Buffers) -> dict[str, Any]:
        _Reader(params)
        infos = await asyncio.to_thread(self.manager.list)
        return {"sessions": [info.to_json() for info in infos]}

    async def attach(self, ctx: Any, params: Any, buffers: Buffers) -> dict[str, Any]:
        r = _Reader(params)
        session_id = _session_id(r)
        assert session_id is not None
        from_offset = r.integer("fromOffset", lo=0)
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
                self.manager.store, session_id, from_offset, self.manager.config.attach_tail_bytes
            )
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

    async def logs(self, ctx: Any, params: Any, buffers: Buffers) -> Any:
        r = _Reader(params)
        session_id = _session_id(r)
        assert session_id is not None
        offset = r.integer("offset", default=0, lo=0)
        max_bytes = r.integer("maxBytes", default=DEFAULT_LOG_CHUNK, lo=1)
        assert offset is not None and max_bytes is not None
        self._known(session_id)
        chunk = await asyncio.to_thread(
            self.manager.read_log_raw, session_id, offset, min(max_bytes, MAX_LOG_CHUNK)
        )
        out: list[bytes] | None = [] if ctx.binary else None
        result = {
            "chunk": encode_bytes(chunk.data, out),
            "offset": chunk.offset,
            "nextOffset": chunk.next_offset,
            "size": chunk.size,
        }
        return Reply(result, out)

    async def signal(self, ctx: Any, params: Any, buffers: Buffers) -> dict[str, Any]:
        r = _Reader(params)
        session_id = _session_id(r)
        assert session_id is not None
        signum = parse_signal(r)
        self._known(session_id)
        await asyncio.to_thread(self.manager.signal, session_id, signum)
        return {}

    async def delete(self, ctx: Any, params: Any, buffers: Buffers) -> dict[str, Any]:
        r = _Reader(params)
        session_id = _session_id(r)
        assert session_id is not None
        default_ms = int(self.manager.config.delete_grace * 1000)
        grace_ms = r.integer("graceMs", default=default_ms, lo=0, hi=MAX_WAIT_MS)
        assert grace_ms is not None
        self._known(session_id)
        try:
            await asyncio.to_thread(self.manager.delete, session_id, grace_ms / 1000)
        except SessionNotFound:
            raise invalid_request(f"unknown session id {session_id!r}") from None
        return {}

    def handlers(self) -> dict[str, Handler]:
        return {
            "session/create": self.create,
            "session/list": self.list,
            "session/attach": self.attach,
            "session/logs": self.logs,
            "session/signal": self.signal,
            "session/delete": self.delete,
        }


def register_session_methods(dispatcher: Any, config: SessionConfig | None = None) -> None:
    """Add every ``session/*`` method to ``dispatcher`` (kernel and stdio server call this)."""
    for method, handler in SessionMethods(config).handlers().items():
        dispatcher.register(method, handler)
