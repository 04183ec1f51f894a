"""A session's log for a reader: ``%logs`` and ``codex-exec session logs``.

A TTY session's log holds what the program drew: cursor moves, ``\\r`` progress
frames, a full-screen program's redraws. Printed as bytes into a notebook cell, a
pipe or a file, that is noise; so by default it is rendered through a terminal
model (pyte, as ``%exec --tty --capture`` does) and comes out as the text the
terminal showed, colours removed. ``--raw`` gives the bytes as logged. A pipe
session's log is text already and is passed through.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

from .api import SessionManager
from .store import SessionInfo


def log_chunks(
    manager: SessionManager, session_id: str, offset: int, follow: bool = False
) -> Iterator[bytes]:
    """The log's bytes from ``offset``: what is there, or (``follow``) until it ends."""
    if follow:
        for chunk in manager.follow(session_id, offset):
            yield chunk.data
        return
    while True:
        chunk = manager.read_log(session_id, offset)
        if not chunk.data:
            return
        yield chunk.data
        offset = chunk.next_offset


def log_text(
    manager: SessionManager, info: SessionInfo, offset: int, follow: bool = False
) -> Iterator[str]:
    """The log as text, piece by piece: rendered for a TTY session, decoded for pipes."""
    chunks = log_chunks(manager, info.id, offset, follow)
    if info.meta.tty:
        from ..magics.terminal_text import rendered_pieces  # pyte: only when needed

        yield from rendered_pieces(chunks, info.meta.size[0])
        return
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for data in chunks:
        yield decoder.decode(data)
    yield decoder.decode(b"", final=True)


def last_lines(text: str, count: int) -> str:
    """The last ``count`` lines of ``text`` (a final newline kept)."""
    if count <= 0:
        return ""
    lines = text.splitlines(keepends=True)
    return "".join(lines[-count:])
