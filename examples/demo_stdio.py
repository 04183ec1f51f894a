"""A scripted tour of `codex-exec serve` for machines without a browser.

Run: `make demo` (or `.venv/bin/python examples/demo_stdio.py`). It starts the stdio
server, does the handshake, runs a pipe process, a PTY, an interactive `cat`, and
shows the process table, printing every JSON message it sends and receives.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any


class Demo:
    def __init__(self) -> None:
        self.server = subprocess.Popen(
            [sys.executable, "-m", "codex_exec_kernel.cli", "serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        self.next_id = 0

    def send(self, method: str, params: Any = None, request: bool = True) -> Any:
        msg: dict[str, Any] = {"method": method, "params": params or {}}
        if request:
            self.next_id += 1
            msg["id"] = self.next_id
        line = json.dumps(msg)
        print(f"\033[36m→ {line[:150]}\033[0m")
        assert self.server.stdin is not None
        self.server.stdin.write(line + "\n")
        self.server.stdin.flush()
        if not request:
            return None
        while True:
            reply = self.receive()
            if reply.get("id") == self.next_id:
                return reply.get("result", reply.get("error"))

    def receive(self) -> dict[str, Any]:
        assert self.server.stdout is not None
        msg = json.loads(self.server.stdout.readline())
        shown = json.dumps(msg)
        params = msg.get("params", {})
        if "chunk" in params:
            params = {**params, "chunk": base64.b64decode(params["chunk"]).decode(errors="replace")}
            shown = json.dumps({**msg, "params": params})
        print(f"\033[33m← {shown[:150]}\033[0m")
        return msg

    def until_closed(self, process_id: str) -> None:
        while True:
            msg = self.receive()
            if msg.get("method") == "process/closed" and msg["params"]["processId"] == process_id:
                return


def main() -> int:
    demo = Demo()
    print("# handshake")
    demo.send("initialize", {"clientName": "demo"})
    demo.send("initialized", request=False)
    print("\n# a pipe process: stdout and stderr apart, then exit and close")
    started = demo.send("process/start", {"argv": ["sh", "-c", "echo out; echo err >&2; exit 3"]})
    demo.until_closed(started["processId"])
    print("\n# a PTY: the child has a terminal of the size we asked for")
    started = demo.send("process/start", {"argv": ["sh", "-c", "tty; stty size"], "tty": True,
                                          "size": {"rows": 30, "cols": 100}})  # fmt: skip
    demo.until_closed(started["processId"])
    print("\n# interactive: write to cat's stdin, close it")
    started = demo.send("process/start", {"argv": ["cat"], "pipeStdin": True, "processId": "cat"})
    demo.send("process/write", {"processId": "cat", "chunk": base64.b64encode(b"hello\n").decode()})
    demo.send("process/closeStdin", {"processId": "cat"})
    demo.until_closed("cat")
    print("\n# the table, and a bad request answered with a clear error")
    demo.send("process/list")
    demo.send("process/start", {"argv": ["/no/such/program"]})
    assert demo.server.stdin is not None
    demo.server.stdin.close()
    return demo.server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
