"""The ``codex-exec`` command: one entry point for the server, the kernel and sessions."""

from __future__ import annotations

import argparse
import sys

from ._version import __version__
from .connect_cli import add_connect_parser
from .install import add_install_arguments, run_install
from .sessions.cli import add_session_parser

DESCRIPTION = """\
codex-exec: a real shell wherever your Jupyter kernel runs.

  serve     run the process-table server over stdio (JSON-RPC, one message a line;
            see docs/protocol.md). Every process it starts ends when it ends.
  connect   the same protocol on stdio, relayed to the process table of a kernel
            that runs elsewhere: --existing CONNECTION_FILE, or --url of a Jupyter
            server / JupyterHub / Kernel Gateway (see `codex-exec connect --help`).
  install   install the Jupyter kernel "codex-exec" (an IPython kernel with a
            process table, %exec magics and the Kernel Terminal's comm).
  session   background sessions that outlive the kernel: create, list, attach,
            logs, signal, delete (see `codex-exec session --help`).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codex-exec",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "serve",
        help="serve the codex-exec protocol on stdin/stdout",
        description="Serve the codex-exec protocol (JSON-RPC 2.0, one message per line) on "
        "stdin/stdout. Bytes fields are base64. EOF on stdin ends every process it started. "
        "Settings: --ProcessTable.<trait>=VALUE (see --help-all of the server).",
    )
    add_connect_parser(sub)
    install = sub.add_parser(
        "install",
        help="install the codex-exec kernelspec",
        description="Install the codex-exec Jupyter kernelspec (like `python -m ipykernel "
        "install`).",
    )
    add_install_arguments(install)
    add_session_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Unknown options of `serve` are traitlets settings (--ProcessTable.retained_bytes=...).
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        from .transports.stdio import main as serve_main

        return serve_main(rest)
    if args.command == "connect":
        from .transports.relay import main as connect_main

        return connect_main(args, rest)
    if args.command == "install":
        return run_install(args)
    if args.command == "session":
        return args.func(args)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    parser.print_help()
    return 0 if args.command is None else 2


if __name__ == "__main__":
    sys.exit(main())
