"""``ModeTracker``: the modes of a byte stream, kept exact at regex speed.

When output outruns the screen model (a flood), the feeder skips bytes instead of
feeding them: the model is later rebuilt from the newest output only. Whatever the
skipped bytes drew is lost, but the modes a client must get right to talk to the
program (alternate screen, application cursor keys and keypad, bracketed paste,
mouse reporting, autowrap, cursor visibility, the title) are kept: this pass finds
their sequences in the skipped bytes with one regex, far faster than parsing them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .model import ALT_MODES, ScreenModel

#: Private modes carried over a skip, with xterm.js's power-on values.
TRACKED: dict[int, bool] = {
    1: False, 6: False, 7: True, 25: True, 9: False, 1000: False, 1002: False,
    1003: False, 1004: False, 1005: False, 1006: False, 1015: False, 2004: False,
}  # fmt: skip

_SEQ = re.compile(
    rb"\x1b\[\?([0-9;]*)([hl])"  # DECSET / DECRST
    rb"|\x1b([=>])"  # keypad
    rb"|\x1b\][02];([^\x07\x1b]*)(?:\x07|\x1b\\)"  # OSC 0/2 title
    rb"|\x1b(c)"  # RIS
)
#: An unfinished sequence at the end of a piece is carried to the next, up to this.
MAX_CARRY = 512


@dataclass
class ModeTracker:
    """Modes as of the end of what was scanned (see :meth:`from_model`, :meth:`scan`)."""

    private: dict[int, bool] = field(default_factory=lambda: dict(TRACKED))
    keypad: bool = False
    title: str = ""
    alt_mode: int | None = None
    _carry: bytes = b""

    @classmethod
    def from_model(cls, model: ScreenModel) -> ModeTracker:
        private = {mode: model.private_mode(mode) for mode in TRACKED}
        return cls(private, model.keypad, model.title, model.alt_mode)

    def scan(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        """Follow ``data[start:end]`` (not copied when it holds no escape at all)."""
        end = len(data) if end is None else end
        if not self._carry and data.find(b"\x1b", start, end) < 0:
            return  # a text flood: one memchr, no copy, no regex
        data = self._carry + data[start:end]
        self._carry = b""
        last_end = 0
        for m in _SEQ.finditer(data):
            last_end = m.end()
            if m.group(2):
                on = m.group(2) == b"h"
                for part in m.group(1).split(b";"):
                    if part.isdigit():
                        self._set(int(part), on)
            elif m.group(3):
                self.keypad = m.group(3) == b"="
            elif m.group(5):
                self.private = dict(TRACKED)
                self.keypad, self.title, self.alt_mode = False, "", None
            else:
                self.title = m.group(4).decode("utf-8", "replace")
        esc = data.rfind(b"\x1b")
        if esc >= last_end and len(data) - esc <= MAX_CARRY:
            self._carry = data[esc:]

    def _set(self, mode: int, on: bool) -> None:
        if mode in ALT_MODES:
            if on and self.alt_mode is None:
                self.alt_mode = mode
            elif not on:
                self.alt_mode = None
        elif mode in self.private:
            self.private[mode] = on

    def apply(self, model: ScreenModel) -> None:
        """Put these modes on a freshly reset model (its grids start blank)."""
        for mode, on in self.private.items():
            if on != TRACKED[mode]:
                (model.set_mode if on else model.reset_mode)(mode, private=True)
        model.keypad = self.keypad
        model.title = self.title
        if self.alt_mode is not None:
            model.enter_alternate(self.alt_mode)
