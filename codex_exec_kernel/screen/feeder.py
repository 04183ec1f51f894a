"""``ScreenFeeder``: keeps a process's screen model, at a bounded cost to its output.

pyte parses a few hundred kB/s; a PTY flood runs at tens of MB/s. Feeding every byte
as it arrives would cut throughput and delay echoes, so the model is fed lazily:

* output is queued by reference (the same ``bytes`` the process table retains), with
  a ``mark`` (the entry's seq, or the supervisor's log offset) and resizes in order;
* it is fed in small pieces when output pauses (``quiet_seconds`` after the last
  push, and not within ``flood_hold_seconds`` of a skip), in slices of
  ``slice_seconds`` using at most ``duty`` of the loop's time, so no step holds the
  loop for long and an echo never waits behind a redraw;
* a snapshot (:meth:`snapshot`) feeds what is left and renders, in slices that yield
  to the loop;
* when the queue passes ``backlog_bytes`` (output outruns the model: a flood), the
  oldest output is skipped down to the newest ``rebuild_bytes``: a regex pass
  (:class:`.modes.ModeTracker`) keeps the modes exact over it, and the model is
  rebuilt from a blank screen with those modes and the newest output. The screen is
  then what that tail draws: exact for programs that redraw (a pager, an editor,
  ``top``) or print lines; cells drawn only by skipped bytes are blank.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from .model import ModelStream, ScreenModel
from .modes import ModeTracker
from .render import render, render_steps

#: Bytes fed to pyte between two looks at the clock (~1-3 ms at pyte's speed).
PIECE = 1024


@dataclass(frozen=True)
class ScreenSettings:
    """The feeder's limits (from the ``screen_*`` traits of the table or session config)."""

    scrollback_lines: int = 2000
    backlog_bytes: int = 256 * 1024
    rebuild_bytes: int = 32 * 1024
    quiet_seconds: float = 0.05
    slice_seconds: float = 0.005
    duty: float = 0.25
    #: No feeding in the background for this long after a skip: during a flood the
    #: output pauses (flow control, coalescing) but would be skipped again anyway.
    flood_hold_seconds: float = 0.5
    catch_up_slice_seconds: float = 0.02


def _boundary(data: bytes, pos: int) -> int:
    """The first line or escape-sequence start at or after ``pos`` (``pos`` if none near)."""
    window = data[pos : pos + 4096]
    found = [i for i in (window.find(b"\n"), window.find(b"\x1b")) if i >= 0]
    if not found:
        return pos
    i = min(found)
    return pos + i + (1 if window[i : i + 1] == b"\n" else 0)


@dataclass
class _Item:
    mark: int
    data: bytes = b""
    size: tuple[int, int] | None = None  # a resize (rows, cols) instead of output


class ScreenFeeder:
    """One PTY's screen model and the queue of output not yet fed to it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        rows: int,
        cols: int,
        settings: ScreenSettings | None = None,
    ) -> None:
        self.loop = loop
        self.settings = settings or ScreenSettings()
        self.model = ScreenModel(cols, rows, history=self.settings.scrollback_lines)
        self.stream = ModelStream(self.model)
        self.size = (rows, cols)  # the size at the fed point, once rebuilt
        self.fed_mark = 0
        self.skipped_bytes = 0
        self._queue: deque[_Item] = deque()
        self._queued = 0
        self._offset = 0  # bytes of the head item already fed
        self._tracker: ModeTracker | None = None  # set while the model awaits a rebuild
        self._last_push = 0.0
        self._last_skip = -1e9
        self._handle: asyncio.TimerHandle | None = None
        self._busy = False
        self._closed = False

    # ------------------------------------------------------------------ input
    def push(self, data: bytes, mark: int) -> None:
        """Output ``data`` whose position is ``mark`` (non-decreasing)."""
        if not data or self._closed:
            return
        self._queue.append(_Item(mark, data))
        self._queued += len(data)
        if self._queued > self.settings.backlog_bytes:
            self._skip()
        self._last_push = self.loop.time()
        self._schedule(self.settings.quiet_seconds)

    def resize(self, rows: int, cols: int, mark: int) -> None:
        """The terminal became ``rows`` x ``cols`` after the output up to ``mark``."""
        if not self._closed:
            self._queue.append(_Item(mark, size=(rows, cols)))
            self._schedule(self.settings.quiet_seconds)

    @property
    def backlog(self) -> int:
        """Output bytes queued and not yet fed."""
        return self._queued

    @property
    def stale(self) -> bool:
        """The model skipped output and awaits its rebuild."""
        return self._tracker is not None

    def _skip(self) -> None:
        """Give up the oldest queued output down to ``rebuild_bytes``, keeping modes."""
        if self._tracker is None:
            self._tracker = ModeTracker.from_model(self.model)
            self.size = (self.model.lines, self.model.columns)
        tracker = self._tracker
        self._last_skip = self.loop.time()
        while self._queued > self.settings.rebuild_bytes and len(self._queue) > 1:
            item = self._queue.popleft()
            if item.size is not None:
                self.size = item.size
            else:
                tracker.scan(item.data, self._offset)
                rest = len(item.data) - self._offset
                self._queued -= rest
                self.skipped_bytes += rest
            self._offset = 0
            self.fed_mark = max(self.fed_mark, item.mark)
        head = self._queue[0] if self._queue else None
        if head is not None and head.size is None and self._queued > self.settings.rebuild_bytes:
            # One large chunk (a kernel coalesces up to megabytes): keep its tail only,
            # from a line or sequence start so the rebuild does not begin mid-sequence.
            cut = len(head.data) - self.settings.rebuild_bytes
            cut = _boundary(head.data, max(cut, self._offset))
            tracker.scan(head.data, self._offset, cut)
            self._queued -= cut - self._offset
            self.skipped_bytes += cut - self._offset
            self._offset = cut

    def _rebuild(self) -> None:
        tracker = self._tracker
        assert tracker is not None
        self._tracker = None
        rows, cols = self.size
        self.model.resize(rows, cols)
        self.model.reset()
        tracker.apply(self.model)

    # ------------------------------------------------------------------ feeding
    def _feed(self, until: int | None, deadline: float) -> None:
        """Feed queued items with mark <= ``until`` until ``deadline``."""
        queue = self._queue
        if self._tracker is not None:
            self._rebuild()
        while queue and self.loop.time() < deadline:
            item = queue[0]
            if until is not None and item.mark > until:
                break
            if item.size is not None:
                self.model.resize(*item.size)
                queue.popleft()
                continue
            piece = item.data[self._offset : self._offset + PIECE]
            self.stream.feed(piece)
            self._offset += len(piece)
            self._queued -= len(piece)
            if self._offset >= len(item.data):
                queue.popleft()
                self._offset = 0
                self.fed_mark = max(self.fed_mark, item.mark)

    def _schedule(self, delay: float) -> None:
        if self._handle is None and not self._closed:
            self._handle = self.loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._handle = None
        if self._busy or not self._queue:
            return
        now = self.loop.time()
        quiet = self.settings.quiet_seconds
        resume = max(self._last_push + quiet, self._last_skip + self.settings.flood_hold_seconds)
        if now < resume:
            self._schedule(resume - now)
            return
        self._feed(None, now + self.settings.slice_seconds)
        if self._queue:
            used = max(self.loop.time() - now, 0.001)
            self._schedule(used * (1 / self.settings.duty - 1))

    async def snapshot(
        self, until: int, rows: int | None = None, cols: int | None = None
    ) -> tuple[int, bytes]:
        """Feed everything up to ``until``, then render for a fresh ``rows`` x ``cols``
        terminal: (the mark the bytes reflect, the bytes). The mark is ``until``, or
        later when output was skipped past it meanwhile. Both phases run in slices that
        yield to the loop; nothing feeds the model in between."""
        while self._busy:
            await asyncio.sleep(0.001)
        self._busy = True
        slice_seconds = self.settings.catch_up_slice_seconds
        try:
            while True:
                target = max(until, self.fed_mark)
                self._feed(target, self.loop.time() + slice_seconds)
                if self._tracker is None and not (self._queue and self._queue[0].mark <= target):
                    break
                await asyncio.sleep(0)
            mark = max(target, self.fed_mark)
            steps = render_steps(self.model, rows, cols)
            deadline = self.loop.time() + slice_seconds
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    return mark, done.value
                if self.loop.time() >= deadline:
                    await asyncio.sleep(0)
                    deadline = self.loop.time() + slice_seconds
        finally:
            self._busy = False
            if self._queue:
                self._schedule(self.settings.quiet_seconds)

    # ------------------------------------------------------------------ views
    def render(self, rows: int | None = None, cols: int | None = None) -> bytes:
        """The model as bytes for a fresh xterm.js, at once (tests; see :meth:`snapshot`)."""
        return render(self.model, rows, cols)

    def close(self) -> None:
        self._closed = True
        self._queue.clear()
        self._queued = 0
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
