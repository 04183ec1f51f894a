"""Python client of the codex-exec kernel: drive its processes from scripts and tests.

``ExecClient`` (blocking) and ``AsyncExecClient`` (asyncio) share one implementation.
"""

from .aio import AsyncExecClient, AsyncProcess
from .errors import (
    ConnectionClosed,
    ExecError,
    InvalidParams,
    InvalidRequest,
    LimitReached,
    MethodNotFound,
    ParseError,
    SpawnFailed,
)
from .models import Chunk, Output, ProcessInfo
from .sync import ExecClient, Process

__all__ = [
    "AsyncExecClient", "AsyncProcess", "Chunk", "ConnectionClosed", "ExecClient", "ExecError",
    "InvalidParams", "InvalidRequest", "LimitReached", "MethodNotFound", "Output", "ParseError",
    "Process", "ProcessInfo", "SpawnFailed",
]  # fmt: skip
