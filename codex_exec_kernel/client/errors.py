"""Typed errors of the client: each carries the protocol's error code."""

from __future__ import annotations

from typing import Any


class ExecError(Exception):
    """An error answer from the kernel (``code`` is the protocol's error code)."""

    code: int = 0

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.data = data


class ParseError(ExecError):
    code = -32700


class InvalidRequest(ExecError):
    code = -32600


class MethodNotFound(ExecError):
    code = -32601


class InvalidParams(ExecError):
    code = -32602


class SpawnFailed(ExecError):
    """-32603: the kernel could not start the program (the message says why)."""

    code = -32603


class LimitReached(ExecError):
    code = -32010


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
