"""Proving that a pid read from disk is still the session's before anything signals it.

A pid in ``meta.json`` is only a hint: the process may have died and its pid been
reused, or (in a store somebody else could write) be forged. We act on a pid only
when one of these holds:

* it is the peer of the session's attach socket (``SO_PEERCRED``) and our uid, held
  as a pidfd while we still talk to it (see :mod:`.control`);
* its start time (``/proc/<pid>/stat`` field 22, recorded at creation) and owner
  match the recorded ones (:func:`is_same_process`).

pid ≤ 1 and our own process group are never signalled.
"""

from __future__ import annotations

import os


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3 onwards)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    try:
        return stat[stat.rindex(b")") + 2 :].split()
    except ValueError:
        return None


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell reused pids apart."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields is not None else None
    except (ValueError, IndexError):
        return None


def process_uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def signallable(pid: object) -> bool:
    """A pid we may ever signal: an int > 1 that is not our own process group."""
    return isinstance(pid, int) and not isinstance(pid, bool) and pid > 1 and pid != os.getpgrp()


def is_same_process(pid: int | None, start_ticks: int | None) -> bool:
    """Whether ``pid`` is alive, ours, and started at the recorded time (not a reused pid)."""
    if pid is None or start_ticks is None or not signallable(pid):
        return False
    if process_uid(pid) != os.geteuid():
        return False
    return process_start_ticks(pid) == start_ticks


def group_remains_are_sessions(pgid: int, start_ticks: int | None) -> bool:
    """Whether the live process group ``pgid`` is what is left of the session's child.

    If a process has the pid ``pgid`` it must be the child itself (start time and
    owner match). If none has, the group is the original one's remains: Linux does
    not hand out a pid that is still some process group's id.
    """
    if not signallable(pgid):
        return False
    if os.path.exists(f"/proc/{pgid}"):
        return is_same_process(pgid, start_ticks)
    return True
