"""Start a view of a TTY session from its screen, not from the tail of its log.

Replaying the log's last 64 KiB (what ``codex-exec session attach`` and ``%attach``
did) shows a blank or garbled screen once a full-screen program has drawn more than
that since it switched to the alternate screen. The supervisor keeps a screen model
(issue 14): asked with :meth:`AttachClient.request_snapshot`, it sends a
:class:`wire.Snapshot` right after the output it reflects, and the next output
continues it. :class:`SnapshotGate` turns an attach's events into the bytes to show:
nothing until the snapshot, then its redraw, then the live output.
:class:`TerminalModes` remembers what the session switched on in the user's terminal
(alternate screen, cursor-key and keypad modes, mouse reporting, bracketed paste) so
a detach can switch it off again, as tmux does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re

from . import wire
from .api import SessionManager
from .client import AttachClient, Event

#: Written before a snapshot's redraw: the snapshot is for a fresh terminal (soft
#: reset: modes, pen, margins; then home and an empty screen).
FRESH_TERMINAL = b"\x1b[!p\x1b[H\x1b[2J"
#: Switches into or out of an alternate screen.
_ALT = re.compile(rb"\x1b\[\?(?:1049|1047|47)([hl])")
#: What a session may have switched on that a shell prompt does not want: cursor keys
#: and keypad in application mode, bracketed paste, mouse reporting; then the cursor
#: shown and the default pen.
_RESET_MODES = (
    b"\x1b[?1l\x1b>\x1b[?2004l\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1015l"
    b"\x1b[?25h\x1b[0m"
)
#: How long the supervisor may take to make a snapshot (it feeds its model first).
SNAPSHOT_TIMEOUT = 60.0


class SnapshotGate:
    """The bytes to show of an attach's events, starting from the session's screen.

    Asks for a snapshot when the supervisor keeps a screen (a live TTY session);
    otherwise (an older supervisor, a pipe session, a replay of an ended one) every
    output passes as before and :attr:`asked` is False.
    """

    def __init__(self, client: AttachClient, rows: int | None, cols: int | None) -> None:
        self.asked = client.tty and client.screen and client.request_snapshot(rows, cols)
        self.waiting = self.asked
        self.snapshot: wire.Snapshot | None = None

    def shown(self, event: Event) -> bytes | None:
        """What to write for ``event`` (None: nothing)."""
        if isinstance(event, wire.Snapshot):
            if not self.waiting:
                return None  # someone else's request: we follow the output already
            self.waiting = False
            self.snapshot = event
            return event.chunk
        if isinstance(event, wire.Output) and not self.waiting:
            return event.data  # output before the snapshot is in it
        return None


class TerminalModes:
    """Tracks whether the session's screen is the alternate one, to leave it on detach."""

    def __init__(self) -> None:
        self.alternate = False

    def saw(self, data: bytes) -> None:
        switches = _ALT.findall(data)
        if switches:
            self.alternate = switches[-1] == b"h"

    def restore(self) -> bytes:
        """Bytes that give the user's terminal back to their shell."""
        return (b"\x1b[?1049l" if self.alternate else b"") + _RESET_MODES


async def fetch_snapshot(
    manager: SessionManager, session_id: str, rows: int | None = None, cols: int | None = None
) -> wire.Snapshot | None:
    """The session's screen (None: it keeps none, e.g. it has ended or is not a tty)."""
    size = manager.read_log(session_id, 0, 0).size
    client = await manager.attach(session_id, size)  # no replay: the snapshot has it
    try:
        gate = SnapshotGate(client, rows, cols)
        if not gate.asked:
            return None

        async def first() -> wire.Snapshot | None:
            async for event in client.events():
                gate.shown(event)
                if gate.snapshot is not None:
                    return gate.snapshot
            return None

        return await asyncio.wait_for(first(), SNAPSHOT_TIMEOUT)
    finally:
        client.close()


def fetch_snapshot_blocking(manager: SessionManager, session_id: str) -> wire.Snapshot | None:
    """:func:`fetch_snapshot` from code that may run inside an event loop (a cell)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fetch_snapshot(manager, session_id)).result()


def visible_part(snapshot: wire.Snapshot) -> bytes:
    """The snapshot as a terminal without an alternate screen (pyte) should get it:
    in the alternate screen only what follows the switch, on a cleared screen."""
    if snapshot.alternate_screen:
        switches = list(_ALT.finditer(snapshot.chunk))
        if switches:
            return b"\x1b[H\x1b[2J" + snapshot.chunk[switches[-1].end() :]
    return snapshot.chunk
