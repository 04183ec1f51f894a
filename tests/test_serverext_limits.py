"""The IOPub rate-limit exemption is keyed on comms opened with target codex.exec."""

from __future__ import annotations

import json
from typing import Any

from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

from codex_exec_kernel.serverext import _is_our_notification, note_comm_open, wrap_connection_class

V1 = "v1.kernel.websocket.jupyter.org"


class _Handler:
    """Stands in for the websocket handler: only its negotiated subprotocol is read."""

    def __init__(self, subprotocol: str | None) -> None:
        self.selected_subprotocol = subprotocol


def connection(subprotocol: str | None) -> Any:
    """The wrapped jupyter_server connection class, without a live websocket: the
    parts under test only read messages."""
    cls = wrap_connection_class(ZMQChannelsWebsocketConnection)
    conn = cls()
    conn._trait_values["websocket_handler"] = _Handler(subprotocol)  # a trait: no validation
    return conn


def ws_message(session: Session, msg_type: str, content: dict[str, Any], v1: bool) -> Any:
    msg = session.msg(msg_type, content)
    if not v1:
        return json.dumps({**msg, "channel": "shell"}, default=str)
    parts = session.serialize(msg)[1:]  # drop the delimiter: header, parent, metadata, content
    return serialize_msg_to_ws_v1(parts[1:], "shell")


def iopub(session: Session, comm_id: str, method: str) -> dict[str, Any]:
    return session.msg("comm_msg", {"comm_id": comm_id, "data": {"method": method, "params": {}}})


def test_only_codex_exec_comms_of_this_websocket_are_exempt() -> None:
    session = Session(key=b"")
    for v1 in (False, True):
        conn = connection(V1 if v1 else None)
        note_comm_open(conn, ws_message(session, "comm_open",
                                        {"comm_id": "ours", "target_name": "codex.exec",
                                         "data": {}}, v1))  # fmt: skip
        note_comm_open(conn, ws_message(session, "comm_open",
                                        {"comm_id": "theirs", "target_name": "other",
                                         "data": {}}, v1))  # fmt: skip
        note_comm_open(conn, ws_message(session, "comm_msg",
                                        {"comm_id": "x", "data": {"comm_open": 1}}, v1))
        assert _is_our_notification(conn, iopub(session, "ours", "process/output"), [])
        assert _is_our_notification(conn, iopub(session, "ours", "process/closed"), [])
        # another comm claiming to be us, and our comm's other messages, are limited
        assert not _is_our_notification(conn, iopub(session, "theirs", "process/output"), [])
        assert not _is_our_notification(conn, iopub(session, "unknown", "process/output"), [])
        assert not _is_our_notification(conn, iopub(session, "ours", "chatter"), [])
    fresh = connection(None)
    assert not _is_our_notification(fresh, iopub(session, "ours", "process/output"), [])
