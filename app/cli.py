"""``bragg``: the service's command line. One function per subcommand, registered with
:func:`subcommand`; ``main()`` builds the parser from the registry.

    bragg api [--host H] [--port P]              the REST API (uvicorn)
    bragg worker [--device auto|cpu|cuda] [--queues Q ...]   a job worker

To add a subcommand::

    @subcommand("status", "show a job", arg("job_id"), arg("--json", action="store_true"))
    def cmd_status(args) -> int:
        ...
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Arg:
    flags: tuple
    kwargs: dict = field(default_factory=dict)


def arg(*flags, **kwargs) -> Arg:
    return Arg(flags, kwargs)


@dataclass
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    args: tuple[Arg, ...]


COMMANDS: dict[str, Command] = {}


def subcommand(name: str, help: str, *args: Arg):
    def deco(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = Command(name, help, fn, args)
        return fn
    return deco


@subcommand("api", "run the REST API on uvicorn",
            arg("--host", default=None, help="address to bind (default: BRAGG_API_HOST, 127.0.0.1)"),
            arg("--port", type=int, default=None, help="port (default: BRAGG_API_PORT, 8000)"),
            arg("--workers", type=int, default=1, help="uvicorn worker processes (default 1)"))
def cmd_api(args: argparse.Namespace) -> int:
    from app.server import run_api
    return run_api(args.host, args.port, workers=args.workers)


@subcommand("worker", "run a job worker (in-process jobs, warm device)",
            arg("--device", choices=("auto", "cpu", "cuda"), default="auto",
                help="compute device; auto takes CUDA where available (default auto)"),
            arg("--queues", nargs="+", default=None, metavar="QUEUE",
                help="queues to listen on, in priority order: cuda, cpu, auto or full names "
                     "(default: cuda auto cpu on a CUDA worker, cpu auto on a CPU worker)"),
            arg("--name", default=None, help="worker name (default host.pid.device)"),
            arg("--burst", action="store_true", help="quit when the queues are empty"))
def cmd_worker(args: argparse.Namespace) -> int:
    from worker.main import run_worker
    return run_worker(args.device, args.queues, name=args.name, burst=args.burst)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bragg", description="bragg-service command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        for a in cmd.args:
            p.add_argument(*a.flags, **a.kwargs)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
