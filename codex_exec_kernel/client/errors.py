"""Typed errors of the client: each carries the protocol's error code."""

from __future__ import annotations

from typing import Any

from .. import protocol


class ExecError(Exception):
    """An error answer from the kernel (``code`` is the protocol's error code)."""

    code: int = 0

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.data = data


class ParseError(ExecError):
    code = protocol.PARSE_ERROR


class InvalidRequest(ExecError):
    code = protocol.INVALID_REQUEST


class MethodNotFound(ExecError):
    code = protocol.METHOD_NOT_FOUND


class InvalidParams(ExecError):
    code = protocol.INVALID_PARAMS


class SpawnFailed(ExecError):
    """-32603: the kernel could not start the program (the message says why)."""

    code = protocol.INTERNAL_ERROR


class LimitReached(ExecError):
    code = protocol.LIMIT_REACHED


_BY_CODE: dict[int, type[ExecError]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        SpawnFailed,
        LimitReached,
    )
}


def error_from_json(err: dict[str, Any]) -> ExecError:
    code = int(err.get("code", 0))
    return _BY_CODE.get(code, ExecError)(code, str(err.get("message", "")), err.get("data"))


class ConnectionClosed(Exception):
    """The comm or the kernel went away while a call was waiting."""
