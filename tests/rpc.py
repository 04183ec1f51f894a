"""What every protocol test client shares: the error it raises and the bytes codec."""

from __future__ import annotations

import base64
from typing import Any


class RpcError(Exception):
    """An error answer; ``code`` is the protocol's error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def chunk_bytes(value: Any, buffers: list[bytes] | None = None) -> bytes:
    """A bytes field as received: ``{"buffer": i}`` (comm) or base64 (stdio)."""
    if isinstance(value, dict):
        return bytes((buffers or [])[value["buffer"]])
    return base64.b64decode(value)
