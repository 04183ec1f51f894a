"""The xterm.js reference for screen-model tests: ``tests/xterm_ref/screen.mjs`` run by node.

``reference(rows, cols, steps)`` feeds a fresh @xterm/headless terminal and returns its
state; ``differences(a, b)`` lists where two such states differ, cell by cell (chars and
attributes of both buffers, the active buffer, the cursor), empty when they match.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).parent / "xterm_ref" / "screen.mjs"

Step = bytes | tuple[int, int]  # output to write, or a resize to (rows, cols)


def reference(rows: int, cols: int, steps: list[Step], scrollback: int = 2000) -> dict[str, Any]:
    encoded = [
        {"write": base64.b64encode(s).decode()} if isinstance(s, bytes) else {"resize": list(s)}
        for s in steps
    ]
    payload = json.dumps({"rows": rows, "cols": cols, "scrollback": scrollback, "steps": encoded})
    out = subprocess.run(
        ["node", str(SCRIPT)], input=payload.encode(), capture_output=True, timeout=120,
        check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def differences(
    got: dict[str, Any], want: dict[str, Any], *, limit: int = 12, viewport_only: bool = False
) -> list[str]:
    """Where ``got`` differs from ``want`` (at most ``limit`` lines of explanation)."""
    diffs: list[str] = []
    for key in ("active", "cursor", "cursorHidden", "title", "modes"):
        if got[key] != want[key]:
            diffs.append(f"{key}: got {got[key]!r}, want {want[key]!r}")
    for name in ("normal", "alternate"):
        g, w = got["buffers"][name], want["buffers"][name]
        g_lines, w_lines = g["lines"], w["lines"]
        if viewport_only:
            g_lines, w_lines = g_lines[g["baseY"] :], w_lines[w["baseY"] :]
        if len(g_lines) != len(w_lines):
            diffs.append(f"{name}: {len(g_lines)} lines, want {len(w_lines)}")
        for y, (gl, wl) in enumerate(zip(g_lines, w_lines, strict=False)):
            if gl[0] != wl[0]:
                diffs.append(f"{name} line {y}: got {gl[0]!r}\n{' ' * 20}want {wl[0]!r}")
            elif gl[1] != wl[1]:
                x = next(i for i, (a, b) in enumerate(zip(gl[1], wl[1], strict=False)) if a != b)
                diffs.append(f"{name} line {y} col {x} ({gl[0][x]!r}): got {gl[1][x]}, "
                             f"want {wl[1][x]}")  # fmt: skip
            if len(diffs) >= limit:
                return diffs
    return diffs


def text(state: dict[str, Any]) -> str:
    """The active buffer's viewport as text (for messages)."""
    buf = state["buffers"][state["active"]]
    return "\n".join(line[0].rstrip() for line in buf["lines"][buf["baseY"] :])
