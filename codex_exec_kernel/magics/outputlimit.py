"""The head and tail of a long output, in bytes, cut at line ends.

``ExecMagics.max_output_bytes`` bounds what a cell shows: the first half and the last
half of the output stay, the middle is skipped with a notice. Counting bytes makes the
unit match the setting's name, and cutting at line ends means no half line on either
side of the notice (UTF-8 never has a newline byte inside a character, so a cut at
``\\n`` is also a clean character boundary). Only a single line longer than the whole
budget is cut inside.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: How far the head may run past its half of the budget to finish a line it began.
LINE_SLACK = 4096


@dataclass
class HeadTail:
    """Feed ``(key, bytes)`` pieces; the head is returned as it is taken, the tail kept."""

    limit: int
    head_used: int = 0
    head_done: bool = False
    at_line_start: bool = True
    tail: deque[tuple[str, bytes]] = field(default_factory=deque)
    tail_bytes: int = 0
    skipped_bytes: int = 0
    skipped_lines: int = 0
    _drop_to_line_end: bool = False

    @property
    def head_limit(self) -> int:
        return self.limit // 2

    @property
    def tail_limit(self) -> int:
        return self.limit - self.limit // 2

    def add(self, key: str, data: bytes) -> bytes:
        """Take ``data``; return the part that belongs to the head (show it now).

        The head is shown as it arrives, so a line it has begun is finished past the
        budget (by at most ``LINE_SLACK`` bytes) rather than left half shown.
        """
        shown = b""
        if not self.head_done:
            fits = max(0, self.head_limit - self.head_used)
            hard = self.head_limit + LINE_SLACK - self.head_used
            if len(data) <= fits:
                cut = len(data)
            else:
                cut = data.rfind(b"\n", 0, fits) + 1
                if cut == 0 and not self.at_line_start:  # finish the line begun
                    end = data.find(b"\n", 0, max(0, hard))
                    cut = end + 1 if end >= 0 else min(len(data), max(0, hard))
            shown, data = data[:cut], data[cut:]
            self.head_used += cut
            if shown:
                self.at_line_start = shown.endswith(b"\n")
            past = self.head_used >= self.head_limit
            ended = self.at_line_start or self.head_used >= self.head_limit + LINE_SLACK
            self.head_done = bool(data) or (past and ended)
        if data:
            self.tail.append((key, data))
            self.tail_bytes += len(data)
            self._trim()
        return shown

    def _drop(self, n: int) -> None:
        key, first = self.tail[0]
        dropped = first[:n]
        if n >= len(first):
            self.tail.popleft()
        else:
            self.tail[0] = (key, first[n:])
        self.tail_bytes -= len(dropped)
        self.skipped_bytes += len(dropped)
        self.skipped_lines += dropped.count(b"\n")
        self._drop_to_line_end = not dropped.endswith(b"\n")

    def _trim(self) -> None:
        while self.tail and self.tail_bytes > self.tail_limit:
            first = self.tail[0][1]
            excess = self.tail_bytes - self.tail_limit
            end = first.find(b"\n", min(excess, len(first)) - 1)
            if end >= 0:
                self._drop(end + 1)
            elif len(self.tail) > 1:
                self._drop(len(first))
            else:  # the end of one line longer than the tail: cut inside it
                self._drop(excess)
        # What was cut off mid-line goes up to the line's end, if the tail has one.
        while self.tail and self._drop_to_line_end and self.skipped_bytes:
            if not any(b"\n" in piece for _, piece in self.tail):
                break  # one giant line: keep its end
            first = self.tail[0][1]
            end = first.find(b"\n")
            self._drop(len(first) if end < 0 else end + 1)

    def take_tail(self) -> list[tuple[str, bytes]]:
        pieces = list(self.tail)
        self.tail.clear()
        self.tail_bytes = 0
        return pieces

    def notice(self, process_id: str) -> str:
        """The line that stands where the middle was skipped ('' when nothing was)."""
        if not self.skipped_bytes:
            return ""
        return (
            f"... [{self.skipped_bytes:,} bytes ({self.skipped_lines:,} lines) of output "
            f"skipped here; the whole output is readable with process/read on "
            f"{process_id!r} or with %exec --capture] ..."
        )
