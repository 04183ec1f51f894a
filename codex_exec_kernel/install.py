"""Install the ``codex-exec`` kernelspec, like ``python -m ipykernel install``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from jupyter_client.kernelspec import KernelSpecManager

KERNEL_NAME = "codex-exec"
DISPLAY_NAME = "Python 3 (codex-exec)"


def install(
    user: bool = False,
    prefix: str | None = None,
    kernel_name: str = KERNEL_NAME,
    display_name: str = DISPLAY_NAME,
) -> str:
    """Write and install the kernelspec; returns the installed directory."""
    from ipykernel.kernelspec import get_kernel_dict, write_kernel_spec

    # Add to ipykernel's metadata (debugger, supported_encryption, ...), never replace it.
    metadata = {**get_kernel_dict().get("metadata", {}), "codex_exec": True}

    with tempfile.TemporaryDirectory() as tmp:
        path = write_kernel_spec(
            os.path.join(tmp, "spec"),
            overrides={
                "argv": [sys.executable, "-m", "codex_exec_kernel.launcher", "-f",
                         "{connection_file}"],
                "display_name": display_name,
                "language": "python",
                "metadata": metadata,
            },
        )  # fmt: skip
        return KernelSpecManager().install_kernel_spec(
            path, kernel_name, user=user, prefix=prefix
        )


def add_install_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument(
        "--sys-prefix", action="store_true", help=f"install into {sys.prefix} (venv/conda)"
    )
    where.add_argument("--prefix", help="install under PREFIX/share/jupyter/kernels")
    parser.add_argument("--name", default=KERNEL_NAME, help="kernelspec name")
    parser.add_argument("--display-name", default=DISPLAY_NAME, help="name shown in launchers")


def run_install(args: argparse.Namespace) -> int:
    prefix = sys.prefix if args.sys_prefix else args.prefix
    path = install(user=args.user, prefix=prefix, kernel_name=args.name,
                   display_name=args.display_name)  # fmt: skip
    print(f"Installed kernelspec {args.name} in {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m codex_exec_kernel install",
        description="Install the codex-exec Jupyter kernelspec.",
    )
    add_install_arguments(parser)
    return run_install(parser.parse_args(argv))
