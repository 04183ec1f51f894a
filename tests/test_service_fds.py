"""ExecService gives back every fd it takes: its I/O thread's and the SIGINT wakeup
socketpair (issue 12: ``stop()`` used to keep the socketpair, and the wakeup fd stayed
installed, so a second service could not install its own).

The cycles run inside a real codex-exec kernel, on its main thread (the only thread
that may touch ``signal.set_wakeup_fd``), against the kernel object itself.
"""

from __future__ import annotations

import json

from kernel_helpers import running_kernel
from waiting import scaled

CYCLES = 20

CODE = f"""
import json, os, signal
from codex_exec_kernel.service import ExecService
_kernel = get_ipython().kernel
ExecService.of(_kernel).stop()          # the kernel's own service: its fds go first
def _fds():
    return len(os.listdir('/proc/self/fd'))
_before = _fds()
_installed = []
for _ in range({CYCLES}):
    _svc = ExecService(_kernel, parent=_kernel)
    _svc._install_wakeup_fd()
    _installed.append(_svc._wakeup is not None)
    _svc.stop()
_after = _fds()
_left = signal.set_wakeup_fd(-1)
print(json.dumps({{"before": _before, "after": _after, "installed": _installed,
                  "wakeup_left": _left}}))
"""


def test_stop_releases_the_wakeup_socketpair_and_every_fd() -> None:
    with running_kernel() as kc:
        msg_id = kc.execute(CODE)
        out = ""
        while True:
            msg = kc.get_iopub_msg(timeout=scaled(60))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out += msg["content"]["text"]
            elif kind == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
        got = json.loads(out)
    # every cycle installed its own wakeup fd: the previous one was given back
    assert got["installed"] == [True] * CYCLES
    assert got["wakeup_left"] == -1  # and the last stop() left none behind
    # 20 start/stop cycles (I/O thread, its loop, the socketpair) leak no fd
    assert got["after"] <= got["before"], got
