"""A local progress-bar producer (like pip's or tqdm's): colours, \\r, erase, cursor hide.

Used by the tests and the README screenshot instead of a network download.
Run: python tests/progress_bar.py [STEPS] [DELAY]
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
    out = sys.stdout
    out.write("Collecting example-package\n")
    out.write("\x1b[?25l")  # hide the cursor, as rich does
    for i in range(steps + 1):
        done = 40 * i // steps
        bar = "\x1b[38;5;197m" + "━" * done + "\x1b[0m\x1b[38;5;237m" + "━" * (40 - done)
        out.write(f"\r\x1b[2K   {bar}\x1b[0m \x1b[32m{i * 5 / steps:.1f}/5.0 MB\x1b[0m "
                  f"{100 * i // steps:3d}%")
        out.flush()
        time.sleep(delay)
    out.write("\x1b[?25h\nSaved ./example_package-1.0-py3-none-any.whl\n")


if __name__ == "__main__":
    main()
