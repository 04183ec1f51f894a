"""How commands and times are shown to people (``%sessions``, ``codex-exec session list``).

A background session started with ``%exec --bg CMD`` runs ``[$SHELL, "-c", CMD]``;
showing that argv shell-quoted (``/bin/bash -c 'bash -c '"'"'for…'``) hides what the
user typed, so the session stores ``CMD`` as its ``display`` and tables show it,
keeping the argv for details. Times are shown one way everywhere: local time with the
age ("3 min ago").
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import datetime, timezone


def command_text(argv: Sequence[str], display: str | None = None) -> str:
    """The command as typed (``display``), else the argv shell-quoted."""
    return display if display else shlex.join(argv)


def one_line(text: str, width: int = 80) -> str:
    """A multi-line script (``%%exec --bg``) in one table cell: first line and a mark."""
    lines = text.strip().splitlines() or [""]
    first = lines[0]
    more = len(lines) > 1
    if len(first) > width:
        first, more = first[: width - 1], True
    return first + (" …" if more else "")


def age(then: datetime, now: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if unit == 'day' and n > 1 else ''} ago"
    return f"{seconds} s ago"


def parse_time(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def when_text(iso: str | None, now: datetime | None = None) -> str:
    """``2026-11-30 13:05:12 (3 min ago)`` in local time; ``-`` when unknown."""
    when = parse_time(iso)
    if when is None:
        return "-"
    now = now or datetime.now(timezone.utc)
    return f"{when.astimezone().strftime('%Y-%m-%d %H:%M:%S')} ({age(when, now)})"
