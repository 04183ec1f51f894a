"""Plain data the client hands back: output chunks, process descriptions, run results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Chunk:
    """One output chunk, in seq order. ``stream`` is ``stdout``, ``stderr`` or ``pty``."""

    seq: int
    stream: str
    data: bytes


@dataclass(frozen=True)
class ProcessInfo:
    process_id: str
    pid: int
    argv: list[str]
    cwd: str
    tty: bool
    title: str | None
    started_at: str
    exited: bool
    exit_code: int | None
    closed: bool
    next_seq: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProcessInfo:
        return cls(
            process_id=d["processId"], pid=d["pid"], argv=d["argv"], cwd=d["cwd"], tty=d["tty"],
            title=d.get("title"), started_at=d["startedAt"], exited=d["exited"],
            exit_code=d.get("exitCode"), closed=d["closed"], next_seq=d["nextSeq"],
        )  # fmt: skip


@dataclass
class Output:
    """Everything a process printed, per stream, and how it ended."""

    stdout: bytes = b""
    stderr: bytes = b""
    pty: bytes = b""
    exit_code: int | None = None
    signal: str | None = None
    chunks: list[Chunk] = field(default_factory=list)
