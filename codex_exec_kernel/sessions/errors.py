"""The errors of background sessions; every message is one line meant for a person."""

from __future__ import annotations


class SessionError(Exception):
    """Base of every session error; the message is meant for a person."""


class InvalidSessionId(SessionError, ValueError):
    """Not ``[A-Za-z0-9_-]{1,64}``: refused before anything touches the disk."""


class SessionExists(SessionError):
    """Creating a session whose id is taken."""


class SessionNotFound(SessionError):
    """No session matches the id or selector."""


class AmbiguousSelector(SessionError):
    """A prefix that matches more than one session."""


class UnsafeStore(SessionError):
    """A store directory we must not trust (symlink, not ours, writable by others)."""


class CorruptSession(SessionError):
    """A session whose files on disk cannot be trusted or read; it can still be deleted."""

    def __init__(self, session_id: str, reason: str) -> None:
        super().__init__(f"session {session_id} is corrupt: {reason}")
        self.session_id = session_id
        self.reason = reason


class SessionControlError(SessionError):
    """The session's supervisor could not be reached or refused a request."""
