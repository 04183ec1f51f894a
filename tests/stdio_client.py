"""A small synchronous client of ``codex-exec serve`` for the tests (not shipped).

It runs the real server as a subprocess and reads its stdout on a thread, so a test
can wait on responses and notifications with timeouts, or stop reading for a while
to play a slow peer.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from commands import CODEX_EXEC  # noqa: F401
from connect_routes import client_command, startup_timeout
from rpc import RpcError, b64  # noqa: F401  (re-exported for the tests)
from waiting import scaled


class StdioClient:
    def __init__(self, *options: str, initialize: bool = True, flow_control: bool = False,
                 env: dict[str, str] | None = None, cwd: str | None = None,
                 command: list[str] | None = None) -> None:
        # `codex-exec serve`, or `codex-exec connect` to a kernel (CODEX_EXEC_STDIO_ROUTE).
        argv, env, self._cleanup = client_command(options, env, cwd, command)
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=cwd, bufsize=0,
        )
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self.responses: dict[Any, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.unmatched: list[dict[str, Any]] = []
        self._reading = threading.Event()
        self._reading.set()
        self.on_notification: Callable[[dict[str, Any]], None] | None = None
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()
        self.init_result: dict[str, Any] | None = None
        if initialize:
            self.init_result = self.request("initialize", {"clientName": "pytest",
                                                           "flowControl": flow_control},
                                            timeout=startup_timeout(command))
            self.notify("initialized", {})

    # ------------------------------------------------------------------ plumbing
    def _reader(self) -> None:
        assert self.proc.stdout is not None
        stream = self.proc.stdout
        buf = b""
        while True:
            self._reading.wait()
            data = os.read(stream.fileno(), 1 << 20)
            if not data:
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                msg = json.loads(line)
                with self._cond:
                    if "method" in msg:
                        if self.on_notification is not None:
                            self.on_notification(msg)
                        else:
                            self.notifications.append(msg)
                    elif msg.get("id") is not None:
                        self.responses[msg["id"]] = msg
                    else:
                        self.unmatched.append(msg)
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def send_raw(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line if line.endswith(b"\n") else line + b"\n")

    def send(self, obj: Any) -> None:
        self.send_raw(json.dumps(obj).encode())

    def call(self, method: str, params: Any = None, timeout: float = 10.0) -> dict[str, Any]:
        """Send a request and return the whole response message."""
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.wait_response(msg_id, timeout)

    def wait_response(self, msg_id: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + scaled(timeout)
        with self._cond:
            while msg_id not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no response to {msg_id} within {timeout}s")
                self._cond.wait(left)
            return self.responses.pop(msg_id)

    def request(self, method: str, params: Any = None, timeout: float = 10.0) -> Any:
        reply = self.call(method, params, timeout)
        if "error" in reply:
            raise RpcError(reply["error"]["code"], reply["error"]["message"])
        return reply["result"]

    def notify(self, method: str, params: Any = None) -> None:
        msg: dict[str, Any] = {"method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    def wait_unmatched(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + scaled(timeout)
        with self._cond:
            while not self.unmatched:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no id-less error arrived")
                self._cond.wait(left)
            return self.unmatched.pop(0)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
                 ) -> dict[str, Any]:
        """The first notification (kept in order) matching ``predicate``."""
        deadline = time.monotonic() + scaled(timeout)
        with self._cond:
            while True:
                for msg in self.notifications:
                    if predicate(msg):
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("notification did not arrive")
                self._cond.wait(left)

    def output_so_far(self, process_id: str) -> bytes:
        return b"".join(base64.b64decode(m["params"]["chunk"]) for m in self.events(process_id)
                        if m["method"] == "process/output")

    def wait_output(self, process_id: str, predicate: Callable[[bytes], bool],
                    timeout: float = 10.0) -> bytes:
        """All output so far, once it satisfies ``predicate`` (chunk boundaries don't matter)."""
        deadline = time.monotonic() + scaled(timeout)
        with self._cond:
            while True:
                data = self.output_so_far(process_id)
                if predicate(data):
                    return data
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"output of {process_id} never matched: {data[-200:]!r}")
                self._cond.wait(left)

    def events(self, process_id: str) -> list[dict[str, Any]]:
        with self._cond:
            return [m for m in self.notifications
                    if m.get("params", {}).get("processId") == process_id]

    def wait_closed(self, process_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        self.wait_for(lambda m: m["method"] == "process/closed"
                      and m["params"]["processId"] == process_id, timeout)
        return self.events(process_id)

    def run(self, argv: list[str], timeout: float = 10.0, **params: Any) -> dict[str, Any]:
        """Start, wait for close; returns {'stdout','stderr','pty','exit','events'}."""
        started = self.request("process/start", {"argv": argv, **params})
        events = self.wait_closed(started["processId"], timeout)
        return summarize(events) | {"processId": started["processId"], "pid": started["pid"]}

    def close(self, timeout: float = 10.0) -> int:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        self.resume_reading()
        try:
            return self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            cleanup, self._cleanup = self._cleanup, lambda: None
            cleanup()


def summarize(events: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"stdout": b"", "stderr": b"", "pty": b"", "exit": None, "events": events}
    for m in events:
        p = m["params"]
        if m["method"] == "process/output":
            out[p["stream"]] += base64.b64decode(p["chunk"])
        elif m["method"] == "process/exited":
            out["exit"] = p["exitCode"]
            out["signal"] = p["signal"]
    return out
