"""What the kernel may queue on IOPub for its slowest subscriber, counted and bounded.

IOPub never drops (``kernelapp.py``: ``XPUB_NODROP``), and its high-water mark is
finite, so when one subscriber stops reading (a second Jupyter client, frozen),
ipykernel's IOPub thread blocks in its zmq send once that subscriber's queue is
full. Everything the I/O thread hands over after that waits in the IOPub thread's
queue, in our memory. This gate counts what we handed over and the IOPub thread has
not sent yet (a callback scheduled behind each message tells us when it has). Past
``high_water`` bytes or ``max_messages`` it reports congestion, the connections pause
the processes they follow (their children block, as under flow control), and when
the count drains below half it lets them go on. Nothing is dropped: output to every
client slows to what the slowest IOPub subscriber reads.

Messages are never handed over while ``max_messages`` are outstanding, so the I/O
thread cannot block on the IOPub thread's wake-up pipe (a zmq PUSH with a
high-water mark of 1000); answers produced meanwhile wait here, in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Send = Callable[[], None]


@dataclass(eq=False)
class IOPubGate:
    """Lives on the I/O thread; ``iopub_thread`` is ipykernel's ``IOPubThread``,
    ``call_on_io`` hands a call to the I/O thread (``IOThread.call``)."""

    iopub_thread: Any
    call_on_io: Callable[..., None]
    on_congested: Callable[[bool], None]
    high_water: int
    max_messages: int
    pending_bytes: int = 0
    pending_messages: int = 0
    congested: bool = False
    _held: deque[tuple[Send, int]] = field(default_factory=deque)

    def send(self, send: Send, size: int) -> None:
        """Hand one message (``send()`` puts it on IOPub) of about ``size`` bytes over."""
        if self._held or self.pending_messages >= self.max_messages:
            self._held.append((send, size))
        else:
            self._hand_over(send, size)
        self._update()

    def _hand_over(self, send: Send, size: int) -> None:
        send()
        self.pending_bytes += size
        self.pending_messages += 1
        # Runs on the IOPub thread once every message before it has been sent.
        self.iopub_thread.schedule(lambda: self.call_on_io(self._sent, size))

    def _sent(self, size: int) -> None:
        self.pending_bytes -= size
        self.pending_messages -= 1
        while self._held and self.pending_messages < self.max_messages:
            self._hand_over(*self._held.popleft())
        self._update()

    def _update(self) -> None:
        if not self.congested:
            full = self.pending_bytes > self.high_water or bool(self._held)
            if full:
                self.congested = True
                self.on_congested(True)
        elif not self._held and self.pending_bytes <= self.high_water // 2:
            self.congested = False
            self.on_congested(False)
