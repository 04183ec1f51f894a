"""Install the ``codex-exec`` kernelspec, like ``python -m ipykernel install``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from jupyter_client.kernelspec import KernelSpecManager

KERNEL_NAME = "codex-exec"
DISPLAY_NAME = "Python 3 (codex-exec)"
#: Enterprise Gateway's process proxy that starts kernels over SSH on its remote_hosts.
DISTRIBUTED_PROXY = "enterprise_gateway.services.processproxies.distributed.DistributedProcessProxy"
#: The placeholders Enterprise Gateway fills in a remote kernelspec's argv.
EG_ARGUMENTS = [
    "--RemoteProcessProxy.kernel-id", "{kernel_id}",
    "--RemoteProcessProxy.response-address", "{response_address}",
    "--RemoteProcessProxy.public-key", "{public_key}",
    "--RemoteProcessProxy.port-range", "{port_range}",
]  # fmt: skip


def gateway_argv(python: str, launcher: str | None, ip: str | None) -> list[str]:
    """argv of a kernelspec that Enterprise Gateway runs on the kernel's host: our
    launcher (which reuses the gateway's launch_ipykernel.py) with the gateway's arguments."""
    argv = [python, "-m", "codex_exec_kernel.gateway_launcher"]
    if launcher:
        argv += ["--launcher", launcher]
    if ip:
        argv += ["--ip", ip]
    return argv + EG_ARGUMENTS


def install(
    user: bool = False,
    prefix: str | None = None,
    kernel_name: str = KERNEL_NAME,
    display_name: str = DISPLAY_NAME,
    argv: list[str] | None = None,
    process_proxy: dict | None = None,
) -> str:
    """Write and install the kernelspec; returns the installed directory.

    ``argv`` and ``process_proxy`` (Enterprise Gateway's ``metadata.process_proxy``) make
    a gateway kernelspec; without them it is the local ``-f {connection_file}`` one."""
    from ipykernel.kernelspec import get_kernel_dict, write_kernel_spec

    # Add to ipykernel's metadata (debugger, supported_encryption, ...), never replace it.
    metadata: dict = {**get_kernel_dict().get("metadata", {}), "codex_exec": True}
    if process_proxy:
        metadata["process_proxy"] = process_proxy
    with tempfile.TemporaryDirectory() as tmp:
        path = write_kernel_spec(
            os.path.join(tmp, "spec"),
            overrides={
                "argv": argv or [sys.executable, "-m", "codex_exec_kernel.launcher", "-f",
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
    eg = parser.add_argument_group(
        "Enterprise Gateway",
        "Install a kernelspec for Jupyter Enterprise Gateway (on the gateway's host; the "
        "kernel runs where its process proxy puts it, see docs/deploy.md).",
    )
    eg.add_argument("--enterprise-gateway", action="store_true",
                    help="write a remote kernelspec (process-proxy metadata, the gateway's "
                    "{kernel_id}/{response_address}/{public_key}/{port_range} arguments)")
    eg.add_argument("--process-proxy", default=DISTRIBUTED_PROXY, metavar="CLASS",
                    help=f"the process proxy class (default {DISTRIBUTED_PROXY})")
    eg.add_argument("--remote-hosts", metavar="HOST,...",
                    help="hosts the distributed proxy may use (default: the gateway's "
                    "--EnterpriseGatewayApp.remote_hosts)")
    eg.add_argument("--kernel-python", metavar="PATH",
                    help="the Python on the kernel's host that has codex-exec-kernel "
                    "(default: this one)")
    eg.add_argument("--launcher", metavar="PATH",
                    help="Enterprise Gateway's launch_ipykernel.py on the kernel's host "
                    "(default: the path in the gateway's kernel images)")
    eg.add_argument("--ip", metavar="ADDR",
                    help="address the remote kernel binds (default 0.0.0.0)")  # fmt: skip


def run_install(args: argparse.Namespace) -> int:
    prefix = sys.prefix if args.sys_prefix else args.prefix
    argv = proxy = None
    if args.enterprise_gateway:
        argv = gateway_argv(args.kernel_python or sys.executable, args.launcher, args.ip)
        proxy = {"class_name": args.process_proxy}
        if args.remote_hosts:
            proxy["config"] = {"remote_hosts": args.remote_hosts}
    path = install(user=args.user, prefix=prefix, kernel_name=args.name,
                   display_name=args.display_name, argv=argv,
                   process_proxy=proxy)  # fmt: skip
    print(f"Installed kernelspec {args.name} in {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m codex_exec_kernel install",
        description="Install the codex-exec Jupyter kernelspec.",
    )
    add_install_arguments(parser)
    return run_install(parser.parse_args(argv))
