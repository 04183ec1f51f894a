"""How a ``%exec`` cell shows its command's output.

* :class:`Display` (pipes): stdout and stderr as the cell's streams, as they arrive.
* :class:`TtyDisplay` (``--tty``): the output rendered as a terminal shows it
  (:mod:`.terminal_text`), in one display output updated in place while the command
  runs, so a progress bar moves on one line and the saved notebook holds the final
  text with colours only.

Both keep the head and the tail of a long output (``ExecMagics.max_output_bytes``,
:mod:`.outputlimit`).
"""

from __future__ import annotations

import codecs
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from .outputlimit import HeadTail
from .terminal_text import TerminalText

#: Bytes per second a live display may resend (its whole text each time): a flood
#: updates less often instead of flooding the frontend.
UPDATE_BYTES_PER_SECOND = 2_000_000


@dataclass
class Display:
    """Writes output to the cell's streams, keeping head and tail past a limit."""

    limit: int
    quiet: bool = False
    process_id: str = ""  # set by the run, for the notice
    budget: HeadTail = field(init=False)
    decoders: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.budget = HeadTail(self.limit)

    def stream_for(self, name: str) -> TextIO:
        return sys.stderr if name == "stderr" else sys.stdout

    def _write(self, stream: str, data: bytes) -> None:
        decoder = self.decoders.setdefault(
            stream, codecs.getincrementaldecoder("utf-8")(errors="replace")
        )
        text = decoder.decode(data)
        if text:
            out = self.stream_for(stream)
            out.write(text)
            out.flush()

    def write(self, stream: str, data: bytes) -> None:
        if self.quiet:
            return
        shown = self.budget.add(stream, data)
        if shown:
            self._write(stream, shown)

    def tick(self) -> None:
        """Called while following; stream output needs nothing here."""

    def finish(self, process_id: str) -> None:
        if self.quiet:
            return
        notice = self.budget.notice(process_id)
        if notice:
            sys.stdout.flush()
            sys.stderr.write(f"\n{notice}\n")
            sys.stderr.flush()
            self.decoders.clear()  # the tail starts on a line of its own
        for stream, data in self.budget.take_tail():
            self._write(stream, data)
        for stream, decoder in self.decoders.items():
            rest = decoder.decode(b"", final=True)
            if rest:
                self.stream_for(stream).write(rest)


class TtyDisplay:
    """PTY output as a terminal shows it: one ``display_data`` updated in place."""

    def __init__(self, limit: int, rows: int, refresh: float, quiet: bool = False) -> None:
        self.quiet = quiet
        self.refresh = refresh
        self.terminal = TerminalText(rows)
        self.budget = HeadTail(limit)
        self.head: list[str] = []
        self.handle: Any = None
        self.changed = False
        self.next_update = 0.0
        self.process_id = ""  # set by the run, for the notice

    def write(self, stream: str, data: bytes) -> None:
        if self.quiet:
            return
        self.terminal.feed(data)
        self.changed = True
        self.tick()

    def _settle(self) -> None:
        """Lines that left the screen go to the head or the bounded tail (in one piece:
        the budget cuts at line ends by itself)."""
        lines = self.terminal.take_final()
        if lines:
            shown = self.budget.add("pty", ("\n".join(lines) + "\n").encode())
            if shown:
                self.head.append(shown.decode("utf-8", "replace"))

    def text(self, process_id: str) -> str:
        self._settle()
        parts = list(self.head)
        notice = self.budget.notice(process_id)
        if notice:
            parts.append(f"\x1b[2m{notice}\x1b[0m\n")
        parts.extend(piece.decode("utf-8", "replace") for _, piece in self.budget.tail)
        parts.extend(line + "\n" for line in self.terminal.screen_lines())
        return "".join(parts)

    def _publish(self, process_id: str) -> None:
        from IPython.display import display

        text = self.text(process_id)
        if not text and self.handle is None:
            return
        bundle = {"text/plain": text.rstrip("\n")}
        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)
        self.changed = False
        pace = len(text) / UPDATE_BYTES_PER_SECOND
        self.next_update = time.monotonic() + max(self.refresh, pace)

    def tick(self) -> None:
        """Publish what changed, at most every ``refresh`` seconds (cell thread only:
        a display from another thread would not reach the cell)."""
        if self.quiet or not self.changed or time.monotonic() < self.next_update:
            return
        if threading.current_thread() is threading.main_thread():
            self._publish(self.process_id)

    def finish(self, process_id: str) -> None:
        if not self.quiet and (self.changed or self.budget.skipped_bytes):
            self._publish(process_id)
