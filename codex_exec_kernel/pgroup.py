"""Process groups: signal one, tell whether it still has a live member, end it.

Every child we start leads its own session, so "the process" a user addresses is
its whole process group. This module is the one place that knows how to act on a
group. It imports only the standard library because the orphan watchdog (a tiny
separate process) and the sessions' supervisor use it too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

#: What "ask it to end" sends: SIGHUP and SIGTERM as a closing terminal would, then
#: SIGCONT because a stopped group cannot act on SIGTERM.
TERMINATE_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGCONT)
_POLL = 0.01


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group; False when the group no longer exists."""
    if pgid <= 1:  # 0 and 1 would address our own group or every process
        return False
    try:
        os.killpg(pgid, signum)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _state(pid: int | str) -> tuple[bytes, int] | None:
    """``(state letter, pgid)`` of a process from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0], int(fields[2])
    except (OSError, IndexError, ValueError):
        return None


def _live(state: tuple[bytes, int] | None, pgid: int) -> bool:
    return state is not None and state[1] == pgid and state[0] not in (b"Z", b"X")


def process_running(pid: int) -> bool:
    """A live process that is not a zombie."""
    state = _state(pid)
    return state is not None and state[0] not in (b"Z", b"X")


def group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member that is not a zombie.

    ``killpg(pgid, 0)`` also succeeds for zombies, and where init does not reap (some
    containers) an orphan's zombie lingers forever; so look at the members' states.
    The leader is looked at first: while it runs, no scan of /proc is needed.
    """
    if not signal_group(pgid, 0):
        return False
    if _live(_state(pgid), pgid):
        return True
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return True
    return any(_live(_state(pid), pgid) for pid in pids)


def terminate_group(pgid: int) -> bool:
    """Ask the group to end (SIGHUP, SIGTERM, SIGCONT). True when it existed."""
    sent = [signal_group(pgid, signum) for signum in TERMINATE_SIGNALS]
    return any(sent)


def _wait_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True


def end_group(pgid: int, grace: float, *, reap_wait: float = 2.0) -> bool:
    """Terminate the group, SIGKILL what is left after ``grace`` seconds, and wait up
    to ``reap_wait`` more for it to be gone. Blocks: call it from a worker thread.
    True when the group is gone at the end."""
    terminate_group(pgid)
    if _wait_gone(pgid, grace):
        return True
    signal_group(pgid, signal.SIGKILL)
    return _wait_gone(pgid, reap_wait)


async def end_group_async(pgid: int, grace: float, *, terminate: bool = True) -> bool:
    """:func:`end_group` for an event loop: polls with ``asyncio.sleep``. With
    ``terminate=False`` the caller has already asked (e.g. through its backend)."""
    if terminate:
        terminate_group(pgid)
    deadline = time.monotonic() + grace
    while group_alive(pgid) and time.monotonic() < deadline:
        await asyncio.sleep(_POLL * 2)
    if group_alive(pgid):
        signal_group(pgid, signal.SIGKILL)
        return False
    return True
