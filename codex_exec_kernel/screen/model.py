"""``ScreenModel``: pyte's ``Screen`` with what a faithful redraw needs.

pyte (a maintained VT100/xterm emulator) parses and keeps the grid, cursor, margins
and modes. It lacks what xterm.js has and a redraw must reproduce, added here:

* the alternate screen (private modes 47, 1047, 1049) with its own grid, saved
  cursor and margins, like xterm.js's two buffers;
* scrollback: lines that scroll off the top of the normal screen (when the scroll
  region starts at the top, as in xterm.js), kept up to ``history`` lines;
* colours as xterm.js stores them: a 16-colour index (``p3``, from SGR 33), a
  256-colour index (``x3``, from 38;5;3) or RGB (``#rrggbb``), not pyte's hex strings;
  dim and invisible attributes;
* application keypad (ESC = / ESC >), SU/SD (CSI S / T), REP (CSI b);
* DECCOLM (132 columns) is ignored, as xterm.js does by default.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, NamedTuple

import pyte
from pyte import modes as mo
from pyte.screens import Margins

ALT_MODES = (47, 1047, 1049)


class Cell(NamedTuple):
    """pyte's ``Char`` fields (pyte builds cells with ``_replace``) plus dim and hidden."""

    data: str
    fg: str = "default"
    bg: str = "default"
    bold: bool = False
    italics: bool = False
    underscore: bool = False
    strikethrough: bool = False
    reverse: bool = False
    blink: bool = False
    dim: bool = False
    hidden: bool = False


BLANK = Cell(" ")
_KEYPAD = re.compile(rb"\x1b[=>]")

_FLAG_ON = {1: "bold", 2: "dim", 3: "italics", 4: "underscore", 5: "blink", 7: "reverse",
            8: "hidden", 9: "strikethrough", 21: "underscore"}  # fmt: skip
_FLAG_OFF = {22: ("bold", "dim"), 23: ("italics",), 24: ("underscore",), 25: ("blink",),
             27: ("reverse",), 28: ("hidden",), 29: ("strikethrough",)}  # fmt: skip


class _Buffer(NamedTuple):
    """The screen state that is per buffer in xterm.js (the other one, put aside)."""

    buffer: Any
    savepoints: list[Any]
    margins: Margins | None


class ScreenModel(pyte.Screen):
    """A pyte screen whose state a :func:`render.render` call can redraw exactly."""

    def __init__(self, columns: int, lines: int, history: int = 2000) -> None:
        self.history: deque[Any] = deque(maxlen=max(0, history))
        self.alt_mode: int | None = None  # which of ALT_MODES entered the alternate screen
        self.other: _Buffer | None = None  # the normal screen while the alternate is shown
        self.keypad = False
        self._last_char = ""
        super().__init__(columns, lines)

    @property
    def default_char(self) -> Cell:  # type: ignore[override]
        return BLANK

    def reset(self) -> None:
        super().reset()
        self.cursor.attrs = BLANK
        self.history.clear()
        self.alt_mode = None
        self.other = None
        self.keypad = False
        self.savepoints = []

    # ------------------------------------------------------------------ modes
    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        private = bool(kwargs.get("private"))
        rest = []
        for mode in modes:
            if private and mode in ALT_MODES:
                self.enter_alternate(mode)
            elif not (private and mode == 3):  # DECCOLM: ignored like xterm.js
                rest.append(mode)
        if rest:
            super().set_mode(*rest, **kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        private = bool(kwargs.get("private"))
        rest = []
        for mode in modes:
            if private and mode in ALT_MODES:
                self.leave_alternate(mode)
            elif not (private and mode == 3):
                rest.append(mode)
        if rest:
            super().reset_mode(*rest, **kwargs)

    def private_mode(self, mode: int) -> bool:
        return (mode << 5) in self.mode

    def enter_alternate(self, mode: int) -> None:
        """Like xterm.js: 1049 saves the cursor first; the alternate screen starts blank
        and keeps the cursor position."""
        if self.other is not None:
            return
        if mode == 1049:
            self.save_cursor()
        self.other = _Buffer(self.buffer, self.savepoints, self.margins)
        self.buffer = self._new_buffer()
        self.savepoints = []
        self.margins = None
        self.alt_mode = mode
        self.dirty.update(range(self.lines))

    def leave_alternate(self, mode: int) -> None:
        if self.other is None:
            return
        self.buffer, self.savepoints, self.margins = self.other
        self.other = None
        self.alt_mode = None
        if mode == 1049:
            self.restore_cursor()
        self.dirty.update(range(self.lines))

    def _new_buffer(self) -> Any:
        fresh = pyte.Screen(self.columns, 1)  # pyte's own line factory, default blank
        fresh.buffer.clear()
        buf = fresh.buffer
        buf.default_factory = lambda: pyte.screens.StaticDefaultDict(BLANK)
        return buf

    # ------------------------------------------------------------------ scrolling
    def index(self) -> None:
        top, bottom = self.margins or Margins(0, self.lines - 1)
        if self.cursor.y == bottom and top == 0 and self.other is None and self.history.maxlen:
            self.history.append(self.buffer[0])
        super().index()

    def scroll_up(self, count: int = 1, **kwargs: Any) -> None:
        """SU (CSI S): the region scrolls up, without moving the cursor."""
        saved = self.cursor.y
        bottom = self.margins.bottom if self.margins else self.lines - 1
        for _ in range(min(max(count, 1), self.lines)):
            self.cursor.y = bottom
            self.index()
        self.cursor.y = saved

    def scroll_down(self, count: int = 1, **kwargs: Any) -> None:
        """SD (CSI T): the region scrolls down, without moving the cursor."""
        saved = self.cursor.y
        top, _ = self.margins or Margins(0, self.lines - 1)
        for _ in range(min(max(count, 1), self.lines)):
            self.cursor.y = top
            self.reverse_index()
        self.cursor.y = saved

    def repeat_last(self, count: int = 1, **kwargs: Any) -> None:
        """REP (CSI b): the last printed character again ``count`` times."""
        if self._last_char:
            self.draw(self._last_char * min(max(count, 1), 65535))

    def draw(self, data: str) -> None:
        if data:
            self._last_char = data[-1]
        super().draw(data)

    def set_keypad(self, on: bool) -> None:
        self.keypad = on

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        """Like xterm.js: fewer rows push the top rows into scrollback when the cursor
        would leave the screen (else empty rows go from the bottom)."""
        lines = lines or self.lines
        if lines < self.lines:
            push = max(0, self.cursor.y + 1 - lines)
            for _ in range(push):
                if self.other is None and self.history.maxlen:
                    self.history.append(self.buffer[0])
                for y in range(self.lines - 1):
                    self.buffer[y] = self.buffer[y + 1]
                self.buffer.pop(self.lines - 1, None)
            self.cursor.y -= push
            for y in range(lines, self.lines):
                self.buffer.pop(y, None)
            self.lines = lines
        super().resize(lines, columns)
        self.cursor.y = min(self.cursor.y, self.lines - 1)

    # ------------------------------------------------------------------ SGR
    def select_graphic_rendition(self, *attrs: int, **kwargs: Any) -> None:
        """SGR with xterm.js's colour modes (16 / 256 / RGB) kept apart."""
        if not attrs or attrs == (0,):
            self.cursor.attrs = BLANK
            return
        replace: dict[str, Any] = {}
        params = list(attrs)
        i = 0
        while i < len(params):
            a = params[i]
            i += 1
            if a == 0:
                replace = dict(BLANK._asdict())
                del replace["data"]
            elif a in _FLAG_ON:
                replace[_FLAG_ON[a]] = True
            elif a in _FLAG_OFF:
                for name in _FLAG_OFF[a]:
                    replace[name] = False
            elif 30 <= a <= 37 or 90 <= a <= 97:
                replace["fg"] = f"p{a - 30 if a < 90 else a - 82}"
            elif 40 <= a <= 47 or 100 <= a <= 107:
                replace["bg"] = f"p{a - 40 if a < 100 else a - 92}"
            elif a == 39:
                replace["fg"] = "default"
            elif a == 49:
                replace["bg"] = "default"
            elif a in (38, 48) and i < len(params):
                key = "fg" if a == 38 else "bg"
                kind = params[i]
                if kind == 5 and i + 1 < len(params):
                    replace[key] = f"x{params[i + 1] & 0xFF}"
                    i += 2
                elif kind == 2 and i + 3 < len(params):
                    r, g, b = (v & 0xFF for v in params[i + 1 : i + 4])
                    replace[key] = f"#{r:02x}{g:02x}{b:02x}"
                    i += 4
                else:
                    i = len(params)
        self.cursor.attrs = self.cursor.attrs._replace(**replace)

    # pyte calls these with replies for the program: the model never answers.
    def write_process_input(self, data: str) -> None:
        pass


class ModelStream(pyte.ByteStream):
    """pyte's byte stream with the sequences :class:`ScreenModel` adds."""

    csi = {**pyte.ByteStream.csi, "S": "scroll_up", "T": "scroll_down", "b": "repeat_last"}
    events = pyte.ByteStream.events | {"scroll_up", "scroll_down", "repeat_last"}

    def __init__(self, screen: ScreenModel) -> None:
        super().__init__(screen)
        self._model = screen
        self._held = b""

    def feed(self, data: bytes) -> None:  # type: ignore[override]
        # ESC = / ESC > (keypad) are not pyte events: applied around them here. A final
        # ESC waits for the next piece, which may make it one of them.
        if self._held:
            data, self._held = self._held + data, b""
        if data.endswith(b"\x1b"):
            data, self._held = data[:-1], b"\x1b"
        if b"\x1b=" in data or b"\x1b>" in data:
            pos = 0
            for m in _KEYPAD.finditer(data):
                super().feed(data[pos : m.start()])
                self._model.set_keypad(m.group() == b"\x1b=")
                pos = m.end()
            super().feed(data[pos:])
        else:
            super().feed(data)


__all__ = ["BLANK", "Cell", "ModelStream", "ScreenModel", "mo"]
