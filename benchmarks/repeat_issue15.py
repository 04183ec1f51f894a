"""Issue 15's figures, three times: the spread on a shared machine.

Run: ``.venv/bin/python benchmarks/repeat_issue15.py [--runs 3]`` (about 25 minutes on a
loaded machine). Runs ``bench_stdio.py``, ``bench_kernel.py --only throughput``,
``bench_pty_floor.py`` and ``bench_idle.py`` in turn, ``--runs`` times, and writes the
headline ratio of each run to ``benchmarks/results/issue15-repeats.json`` (the full JSON
lines go there too). The last full ``bench_stdio.py`` / ``bench_pty_floor.py`` /
``bench_idle.py`` run also refreshes ``stdio.json`` / ``pty-floor.json`` / ``idle.json``
as those scripts always do; ``kernel.json`` is left alone (a partial run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from _common import HERE, RESULTS, log, machine

SCRIPTS = {
    "stdio": ["bench_stdio.py"],
    "kernel": ["bench_kernel.py", "--only", "throughput"],
    "pty_floor": ["bench_pty_floor.py"],
    "idle": ["bench_idle.py"],
}


def headline(name: str, r: dict[str, Any]) -> dict[str, Any]:
    """The figures issue 15 names, out of one run's JSON line."""
    load = r["machine"]["loadavg_at_start"]
    if name == "stdio":
        t = r["throughput"]
        out: dict[str, Any] = {"loadavg_at_start": load, "codec_only": t["codec_only"]}
        for m in ("pty", "pipe"):
            out[f"{m}_ratio_vs_ceiling"] = t[m]["ratio_vs_ceiling"]
            out[f"{m}_MBps"] = t[m]["default"]["ours_MBps"]
            out[f"{m}_ceiling_MBps"] = t[m]["ceiling_MBps"]
            out[f"{m}_ratio_all_three_as_before"] = t[m]["all_three_as_before"]["ratio_vs_ceiling"]
            out[f"{m}_table_in_process_ratio"] = t[m]["table_in_process_no_transport"][
                "ratio_vs_ceiling"
            ]
        return out
    if name == "kernel":
        t = r["throughput"]
        return {
            "loadavg_at_start": load,
            "ours_MBps": t["ours_MBps"],
            "ceiling_MBps": t["ceiling_MBps"],
            "ratio_ours_vs_ceiling": t["ratio_ours_vs_ceiling"],
            "ratio_ours_vs_terminado": t["ratio_ours_vs_terminado"],
            "ratio_ours_no_client_vs_ceiling": t["ratio_ours_no_client_vs_ceiling"],
            "ours_cpu_seconds_rep1": t["ours_cpu_seconds_rep1"],
        }
    if name == "pty_floor":
        return {
            "loadavg_at_start": load,
            "median_MBps": r["median_MBps"],
            "median_ratio_vs_blocking": r["median_ratio_vs_blocking"],
            "median_ratio_vs_floor": r["median_ratio_vs_floor"],
        }
    return {
        "loadavg_at_start": load,
        "loaded_percent_of_one_core": r["loaded"]["ours"]["percent_of_one_core"],
        "empty_percent_of_one_core": r["empty"]["ours"]["percent_of_one_core"],
        "stock_ipykernel_percent_of_one_core": r["loaded"]["stock"]["percent_of_one_core"],
        "resolution_percent": r["loaded"]["ours"]["resolution_percent"],
        "cpu_s_starting_them": r["starting_them"]["cpu_s"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    out: dict[str, Any] = {"benchmark": "issue15-repeats", "machine": machine(),
                           "runs": {name: [] for name in SCRIPTS}, "raw": {n: [] for n in SCRIPTS}}
    for i in range(args.runs):
        for name, argv in SCRIPTS.items():
            log(f"run {i + 1}/{args.runs}: {' '.join(argv)}")
            done = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]],
                                  stdout=subprocess.PIPE, check=True, text=True)  # fmt: skip
            line = json.loads(done.stdout.strip().splitlines()[-1])
            out["raw"][name].append(line)
            out["runs"][name].append(headline(name, line))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "issue15-repeats.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["runs"], separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
