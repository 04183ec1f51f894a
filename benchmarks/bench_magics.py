"""`%exec cat` of a 20 MB file vs `!cat` in a stock ipykernel (also %%bash for reference).

Time from sending the cell until its reply, with every byte of output received by
the client (the cell's output limit raised so nothing is skipped). Prints one JSON
line and writes benchmarks/results/magics.json. Run: .venv/bin/python benchmarks/bench_magics.py
(``--no-bash-magic`` leaves out the slow %%bash reference). ``exec_tty`` is ``%exec --tty
cat``: the PTY rendered like a terminal (terminal_text.py), every line shown.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client import KernelManager

SIZE = 20 * 1024 * 1024
REPEAT = 3


def make_file(directory: str) -> tuple[str, int]:
    raw = os.urandom(SIZE * 3 // 4)
    text = base64.encodebytes(raw)  # printable, 76-char lines
    path = os.path.join(directory, "data.txt")
    Path(path).write_bytes(text)
    return path, len(text)


def timed_cell(kc, code: str, expected: int, lossy_ok: bool = False) -> float:
    got = 0

    def hook(msg: dict) -> None:
        nonlocal got
        if msg["msg_type"] == "stream":
            got += len(msg["content"]["text"])
        elif msg["msg_type"] in ("display_data", "update_display_data"):  # --tty: the
            got = len(msg["content"]["data"]["text/plain"]) + 1  # whole text each time

    t0 = time.perf_counter()
    reply = kc.execute_interactive(code, output_hook=hook, timeout=600)
    elapsed = time.perf_counter() - t0
    assert reply["content"]["status"] == "ok", reply["content"]
    if got < expected and lossy_ok:
        LOSSES[code.split()[0]] = got / expected
    else:
        assert got >= expected, f"only {got} of {expected} characters arrived"
    return elapsed


LOSSES: dict[str, float] = {}


def start(name: str):
    km = KernelManager(kernel_name=name)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path, n = make_file(tmp)
        ours_km, ours = start("codex-exec")
        stock_km, stock = start("python3")
        try:
            ours.execute_interactive("%config ExecMagics.max_output_bytes = 1 << 30", timeout=60)
            times: dict[str, list[float]] = {"exec": [], "bang": [], "bash_magic": [],
                                             "exec_tty": []}  # fmt: skip
            for _ in range(REPEAT):  # interleaved, so load affects both alike
                times["exec"].append(timed_cell(ours, f"%exec cat {path}", n))
                times["bang"].append(timed_cell(stock, f"!cat {path}", n))
                # the PTY rendered like a terminal (terminal_text.py), every line shown
                times["exec_tty"].append(timed_cell(ours, f"%exec --tty cat {path}", n))
            if "--no-bash-magic" not in sys.argv:  # minutes on a loaded machine
                times["bash_magic"].append(
                    timed_cell(stock, f"%%bash\ncat {path}", n, lossy_ok=True))  # fmt: skip
        finally:
            for kc, km in ((ours, ours_km), (stock, stock_km)):
                kc.stop_channels()
                km.shutdown_kernel(now=True)
    mb = n / 1e6
    med = {k: statistics.median(v) for k, v in times.items() if v}
    result = {
        "benchmark": "magics_cat_20MB",
        "bytes": n,
        "exec_cat_MBps": round(mb / med["exec"], 1),
        "bang_cat_MBps": round(mb / med["bang"], 1),
        "bash_magic_MBps": round(mb / med["bash_magic"], 2) if times["bash_magic"] else None,
        "ratio_exec_vs_bang": round(med["bang"] / med["exec"], 2),
        "exec_tty_cat_MBps": round(mb / med["exec_tty"], 1),
        "ratio_exec_tty_vs_bang": round(med["bang"] / med["exec_tty"], 2),
        "target_ratio": 5.0,
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        # fraction of the output that reached the client, where the stock kernel lost some
        "delivered_fraction": {k: round(v, 3) for k, v in LOSSES.items()},
    }
    line = json.dumps(result)
    print(line)
    out = Path(__file__).parent / "results" / "magics.json"
    out.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
