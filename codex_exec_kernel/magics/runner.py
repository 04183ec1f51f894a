"""Following one process of the table inside a running cell.

The process lives on the kernel's I/O thread like any other entry (so the Kernel
Terminal and the client see it). The cell's thread subscribes as a flow-controlled
subscriber: events arrive in a queue, the cell writes them to its streams and then
acknowledges them, so a child that prints faster than the notebook can show is
paused rather than buffered without bound.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..process import Event, ManagedProcess
from ..service import ExecService
from .display import Display, TtyDisplay


class CellSubscriber:
    """A subscriber (see ``process.Subscriber``) that hands events to the cell's thread."""

    flow_control = True
    congested = False

    def __init__(self) -> None:
        self.events: queue.Queue[Event] = queue.Queue()

    def deliver(self, process_id: str, event: Event) -> None:
        self.events.put(event)

    def __hash__(self) -> int:
        return id(self)


@dataclass
class RunOutcome:
    process_id: str
    exit_code: int | None
    signal: str | None
    timed_out: bool
    interrupted: bool
    captured: dict[str, bytearray]
    lingering: bool


@dataclass(frozen=True)
class RunOptions:
    """How a cell follows its process (from the %exec options and the magics' traits)."""

    capture: bool
    timeout: float | None
    kill_window: float
    linger: float
    stdin_lines: bool
    input_fn: Any = None


@dataclass(eq=False)
class CellRun:
    """Runs one command for one cell, from start to a closed (or lingering) process."""

    service: ExecService
    proc: ManagedProcess
    display: Display | TtyDisplay
    options: RunOptions
    sub: CellSubscriber = field(default_factory=lambda: CellSubscriber())
    captured: dict[str, bytearray] = field(
        default_factory=lambda: {"stdout": bytearray(), "stderr": bytearray(), "pty": bytearray()}
    )
    exit_code: int | None = None
    signal: str | None = None
    exited: threading.Event = field(default_factory=threading.Event)
    closed: bool = False
    timed_out: bool = False
    interrupted: bool = False
    _last_interrupt: float = 0.0

    def __post_init__(self) -> None:
        self.display.process_id = self.proc.process_id

    # ------------------------------------------------------------------ table calls
    def _on_io(self, fn: Any, *args: Any) -> Any:
        return self.service.io.run(lambda: fn(*args))

    def start_following(self) -> None:
        self._on_io(self.proc.subscribe, self.sub, 0)

    def stop_following(self) -> None:
        self.service.io.call(self.proc.unsubscribe, self.sub)

    def _ack(self, seq: int) -> None:
        self.service.io.call(self.proc.ack, self.sub, seq)

    def _signal(self, signum: int) -> None:
        self.service.io.call(self.proc.send_signal, signum)

    def _terminate(self) -> None:
        self.service.io.call(self.proc.terminate, 2.0)

    # ------------------------------------------------------------------ events
    def _handle(self, event: Event) -> None:
        if event.kind == "output":
            assert event.stream is not None
            self.display.write(event.stream, event.data)
            if self.options.capture:
                self.captured[event.stream] += event.data
            self._ack(event.seq)
        elif event.kind == "exited":
            self.exit_code, self.signal = event.exit_code, event.signal
            self.exited.set()
        else:
            self.closed = True

    def _pump(self, wait: float) -> None:
        try:
            event = self.sub.events.get(timeout=wait)
        except queue.Empty:
            return
        self._handle(event)
        while True:  # take everything already queued before going back to waiting
            try:
                self._handle(self.sub.events.get_nowait())
            except queue.Empty:
                return

    # ------------------------------------------------------------------ main loop
    def run(self) -> RunOutcome:
        self.start_following()
        try:
            if self.options.stdin_lines:
                self._feed_stdin()
            self._follow()
        finally:
            self.stop_following()
            self.display.finish(self.proc.process_id)
        return RunOutcome(
            process_id=self.proc.process_id, exit_code=self.exit_code, signal=self.signal,
            timed_out=self.timed_out, interrupted=self.interrupted, captured=self.captured,
            lingering=not self.closed,
        )  # fmt: skip

    def _follow(self) -> None:
        deadline = time.monotonic() + self.options.timeout if self.options.timeout else None
        exited_at: float | None = None
        while not self.closed:
            try:
                self._pump(0.05)
                self.display.tick()
                now = time.monotonic()
                if deadline is not None and now > deadline and not self.exited.is_set():
                    self.timed_out = True
                    deadline = None
                    self._terminate()
                if self.exited.is_set():
                    exited_at = exited_at or now
                    # A background grandchild may hold the output open forever: the cell
                    # does not wait for it past the linger time.
                    if now - exited_at > self.options.linger and self.sub.events.empty():
                        return
            except KeyboardInterrupt:
                self._on_interrupt()

    def _on_interrupt(self) -> None:
        now = time.monotonic()
        self.interrupted = True
        if now - self._last_interrupt < self.options.kill_window:
            self._signal(signal.SIGKILL)
            # the SIGKILL was sent: the exit follows at once
        else:
            self._signal(signal.SIGINT)
            if not self.display.quiet:
                window = self.options.kill_window
                sys.stderr.write(
                    f"\n[interrupt sent; interrupt again within {window:g}s to kill]\n"
                )
        self._last_interrupt = now

    # ------------------------------------------------------------------ stdin
    def _feed_stdin(self) -> None:
        """Each line the user submits goes to the child; empty or EOF closes its stdin.

        Output keeps streaming from a helper thread while ``input()`` waits, and when
        the child ends first the pending prompt is interrupted so the cell never hangs.
        """
        main = threading.main_thread()
        waiting = threading.Event()
        done = threading.Event()

        def pump_while_waiting() -> None:
            while not done.is_set():
                self._pump(0.05)
                if self.exited.is_set() and waiting.is_set() and not done.is_set():
                    import _thread

                    done.set()
                    if threading.current_thread() is not main:
                        _thread.interrupt_main()
                    return

        pumper = threading.Thread(target=pump_while_waiting, daemon=True)
        pumper.start()
        try:
            while not self.exited.is_set():
                waiting.set()
                try:
                    line = self.options.input_fn("")
                except EOFError:
                    line = ""
                except KeyboardInterrupt:
                    if done.is_set():  # the child ended while we asked: not the user
                        break
                    self._on_interrupt()
                    continue
                finally:
                    waiting.clear()
                if not line:
                    self._on_io(self.proc.close_stdin)
                    break
                self._on_io(self.proc.write, (line + "\n").encode())
        finally:
            done.set()
            pumper.join(1.0)
