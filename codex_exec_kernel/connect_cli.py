"""The ``codex-exec connect`` subcommand's arguments (the relay is transports/relay.py)."""

from __future__ import annotations

import argparse
from typing import Any

CONNECT_DESCRIPTION = """\
Serve the codex-exec protocol on stdin/stdout exactly as `codex-exec serve` does,
relayed to the codex.exec comm of a kernel that runs elsewhere: swap
`codex-exec serve` for `codex-exec connect ...` and a stdio client works unchanged.

  codex-exec connect --existing kernel-1234.json      # ZeroMQ, as jupyter console
  JUPYTER_TOKEN=... codex-exec connect --url http://host:8888/

With --url and no --kernel, a new kernel (--kernel-name, default codex-exec) is
started and shut down on exit unless --keep-kernel. The token is read from
--token, the URL's ?token=, or $JUPYTER_TOKEN / $JUPYTERHUB_API_TOKEN (keeps it
out of `ps`). A dropped websocket is reconnected (output refilled, writes not
repeated). Errors: one line on stderr, exit status 1. Settings:
--Relay.<trait>=VALUE, --StdioServer.<trait>=VALUE.
"""


def add_connect_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "connect",
        help="serve the protocol on stdio, relayed to a (remote) kernel's process table",
        description=CONNECT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--existing", metavar="CONNECTION_FILE",
                       help="a kernel's connection file (a path, or a name in the runtime dir)")
    where.add_argument("--url", help="a Jupyter server, JupyterHub user server or Kernel "
                                     "Gateway URL")  # fmt: skip
    parser.add_argument("--token", default=None,
                        help="API token (default: $JUPYTER_TOKEN or $JUPYTERHUB_API_TOKEN)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--kernel", metavar="ID", help="use this running kernel (--url)")
    which.add_argument("--kernel-name", metavar="NAME", default="codex-exec",
                       help="kernelspec of the kernel to start (--url; default codex-exec)")
    parser.add_argument("--keep-kernel", action="store_true",
                        help="leave a kernel we started running on exit")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for the server and kernel to answer (default 30)")
    return parser
