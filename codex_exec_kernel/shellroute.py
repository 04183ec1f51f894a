"""The direct route: ``codex.exec`` comm messages served on the shell-channel thread.

Why: ipykernel 7 receives every shell message on its shell-channel thread and passes
it over an inproc socket to the thread of its subshell (or the main thread), which
publishes ``status: busy``, runs the comm handler, and publishes ``status: idle``.
For a keystroke that is two thread wake-ups and two extra IOPub messages that every
Jupyter client (JupyterLab's whole UI) processes, all to hand the bytes to our I/O
thread, which does the real work anyway. Measured in the browser, the busy status
reached the page before the echo, and the panel's ack brought a second pair.

So the codex-exec kernel looks at each shell message on the shell-channel thread
first: a ``comm_open`` for target ``codex.exec``, and a ``comm_msg`` / ``comm_close``
for such a comm, are handled right there (the handler only hands the message to the
I/O thread) and publish no status. Everything else, and every message this module
cannot read, goes ipykernel's way unchanged. Because every message of one of our
comms takes this route from its ``comm_open`` on, their order is the order of the
shell socket. The other routes stay: the control channel (clients without
subshells, see ``service.py``) and, in a stock kernel with ``%load_ext
codex_exec_kernel``, the subshell or main shell.
"""

from __future__ import annotations

import logging
from hmac import compare_digest
from typing import Any

from jupyter_client.adapter import adapt

from .protocol import COMM_TARGET

log = logging.getLogger("codex_exec_kernel")

#: The shell messages this route may take.
COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})


class ShellRoute:
    """Decides, on the shell-channel thread, which shell messages go straight to us.

    ``service`` is the kernel's :class:`~codex_exec_kernel.service.ExecService`:
    ``service.connection(comm_id)`` names our comms.
    """

    def __init__(self, kernel: Any, service: Any) -> None:
        self.kernel = kernel
        self.service = service

    def take(self, frames: list[Any]) -> bool:
        """Handle ``frames`` (a shell message as received, ``copy=False``) if it is ours.

        Returns False, having changed nothing, for any other message, and for any message
        it cannot read or whose signature fails: ipykernel's own route then reports it.
        """
        session = self.kernel.session
        if session is None:
            return False
        try:
            read = self._read(session, frames)
        except Exception:  # ipykernel's own route reports bad messages
            return False
        if read is None:
            return False
        idents, msg = read
        self._handle(msg["msg_type"], idents, msg)
        return True

    def _read(self, session: Any, frames: list[Any]) -> tuple[list[Any], dict[str, Any]] | None:
        """(idents, message) if it is one of ours and genuine, else None.

        ``Session.deserialize`` would do, but it costs a keystroke ~0.25 ms on this
        thread (benchmarks/bench_echo_hops.py): it had to run twice (a header-only peek,
        so that a message that is not ours leaves no digest behind, then in full), each
        time checking the HMAC and turning every date of the headers into a datetime,
        which nothing here needs. This makes the same checks once, in the same order: the
        signature is present, not seen before (replays) and right; the digest is recorded
        only for a message we take. Header dates stay strings (they go back out as
        ``parent_header`` exactly as they came).
        """
        idents, rest = session.feed_identities(frames, copy=False)
        if len(rest) < 5:
            return None
        parts = [bytes(frame.bytes) for frame in rest[:5]]
        signature = parts[0]
        if session.auth is not None:
            if not signature or signature in session.digest_history:
                return None
            if not compare_digest(signature, session.sign(parts[1:5])):
                return None
        header = session.unpack(parts[1])
        msg_type = header.get("msg_type")
        if msg_type not in COMM_TYPES:
            return None
        content = session.unpack(parts[4])
        if not isinstance(content, dict) or not self._ours(msg_type, content):
            return None
        if session.auth is not None:
            session._add_digest(signature)  # as deserialize does: replay protection
        msg = {
            "header": header,
            "msg_id": header["msg_id"],
            "msg_type": msg_type,
            "parent_header": session.unpack(parts[2]),
            "metadata": session.unpack(parts[3]),
            "content": content,
            "buffers": [memoryview(frame) for frame in rest[5:]],
        }
        return idents, adapt(msg)  # from older protocol versions, as deserialize does

    def _ours(self, msg_type: str, content: dict[str, Any]) -> bool:
        if msg_type == "comm_open":
            return content.get("target_name") == COMM_TARGET
        return self.service.connection(content.get("comm_id")) is not None

    def _handle(self, msg_type: str, idents: list[Any], msg: dict[str, Any]) -> None:
        manager = self.kernel.comm_manager
        try:
            if msg_type == "comm_msg":
                conn = self.service.connection(msg["content"].get("comm_id"))
                if conn is not None:
                    conn.receive(msg)
            elif msg_type == "comm_open":
                manager.comm_open(None, idents, msg)
            else:
                manager.comm_close(None, idents, msg)
        except Exception:
            log.exception("codex-exec: %s on the shell-channel thread failed", msg_type)
