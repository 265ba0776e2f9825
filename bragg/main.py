"""``bragg``: the service's command line. One function per subcommand, registered with
:func:`subcommand`; ``main()`` builds the parser from the registry.

    bragg up [--port P] [--workers N]            Redis + the API + workers, stopped by Ctrl-C
    bragg api [--host H] [--port P]              the REST API (uvicorn)
    bragg worker [--device auto|cpu|cuda] [--queues Q ...]   a job worker

    bragg submit [--images N] (--config FILE | -- NANOBRAGG ARGS)
                                                 prints the job (or series) id alone on stdout
    bragg status ID | wait ID | fetch ID [--dir D] | trace ID S F | cancel ID
    bragg jobs [--parent SERIES]
    bragg verify [--side cpu:float64 ...] [--pixel S,F ...] [--reference-image F] [--against J]
                 [--dir D] -- NANOBRAGG ARGS       a verification report; exit 0: every criterion met
                                                 the REST API's client (client/api_client.py);
                                                 --url/--token or BRAGG_URL/BRAGG_TOKEN

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

from sim_core.output_formats import SERVICE_OUTPUTS

from jobs.job import JobStatus

STATUSES = tuple(s.value for s in JobStatus)


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
    from app.http_server import run_api
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


@subcommand("up", "start Redis, the API and workers here; Ctrl-C stops them all",
            arg("--host", default=None, help="API address (default: BRAGG_API_HOST, 127.0.0.1)"),
            arg("--port", type=int, default=None, help="API port (default: BRAGG_API_PORT, 8000)"),
            arg("--workers", type=int, default=1, help="worker processes (default 1)"),
            arg("--device", choices=("auto", "cpu", "cuda"), default="auto",
                help="the workers' device (default auto: CUDA where available)"),
            arg("--data-dir", default=None,
                help="artifacts, inputs and Redis data (default: BRAGG_DATA_DIR, ./data)"))
def cmd_up(args: argparse.Namespace) -> int:
    from bragg.stack import run_up
    return run_up(host=args.host, port=args.port, workers=args.workers, device=args.device,
                  data_dir=args.data_dir)


# -- the client (client/api_client.py; presentation in client/subcommands.py) ----------------------
CLIENT = (arg("--url", default=None, help="the API (default: BRAGG_URL, http://127.0.0.1:8000)"),
          arg("--token", default=None, help="bearer token (default: BRAGG_TOKEN)"))


def _count(least: int):
    """An argparse type: an integer >= ``least``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected an integer >= {least}, got {value}")
        return value
    return parse


def _client(name: str):
    def run(args: argparse.Namespace) -> int:
        from client import subcommands as client_cli
        return client_cli.run(getattr(client_cli, name), args)
    return run


subcommand("submit", "submit a job; prints its id alone on standard output",
           arg("--config", metavar="FILE", help="a JSON/YAML config or whole submission"),
           arg("--trace", nargs=2, type=int, action="append", metavar=("S", "F"),
               help="trace pixel (slow, fast); repeatable"),
           arg("--outputs", nargs="+", choices=SERVICE_OUTPUTS,
               default=None, help="files to write (default float smv png; hkl: the P1 "
                                  "structure factors of a model or MTZ file; cbf: a "
                                  "miniCBF image with a Pilatus header)"),
           arg("--device", choices=("auto", "cpu", "cuda"), default=None),
           arg("--dtype", choices=("float64", "float32"), default=None),
           arg("--label", default=None),
           arg("--images", type=_count(1), default=None, metavar="N",
               help="render a series of N images (a rotation dataset): sets -images N in the "
                    "command line or scan.images in the config; -phi, -osc and -phisteps "
                    "describe the first image"),
           arg("--first-image", type=_count(0), default=None, metavar="K",
               help="the series' first image number (default 1): -first_image K or "
                    "scan.first_image"),
           arg("nanobragg_args", nargs="*", metavar="-- NANOBRAGG ARGS",
               help="a nanoBragg command line after --; the files it names are uploaded"),
           *CLIENT)(_client("submit"))
subcommand("status", "show a job (a series: its image counts and failures)", arg("job_id"),
           arg("--json", action="store_true", help="the whole record as JSON"),
           *CLIENT)(_client("status"))
subcommand("wait", "follow a job with a progress bar until it ends (exit 1 unless finished)",
           arg("job_id"), arg("--timeout", type=float, default=None, help="seconds"),
           arg("--quiet", action="store_true", help="no progress bar"),
           *CLIENT)(_client("wait"))
subcommand("fetch", "download every artifact of a finished job and verify sha256.txt (a "
           "series: its dataset zip, unpacked and verified into a new folder)",
           arg("job_id"), arg("--dir", default=None, help="destination (default ./<job id>); "
                                                          "for a series a new or empty folder"),
           *CLIENT)(_client("fetch"))
subcommand("trace", "print the trace of pixel (S, F), tracing it first where needed",
           arg("job_id"), arg("slow", type=_count(0), metavar="S", help="the pixel's row"),
           arg("fast", type=_count(0), metavar="F", help="the pixel's column"),
           arg("--image", type=_count(0), default=None, metavar="N",
               help="a series' image N (a series traces one image at a time)"),
           arg("--timeout", type=float, default=600, help="seconds to wait for a trace job"),
           *CLIENT)(_client("trace"))
subcommand("cancel", "cancel a queued or running job", arg("job_id"), *CLIENT)(_client("cancel"))
subcommand("jobs", "list your jobs, newest first (or a series' child jobs)",
           arg("--status", choices=STATUSES,
               default=None),
           arg("--parent", default=None, metavar="SERIES",
               help="list the child jobs of this series, in image order"),
           arg("--limit", type=_count(1), default=None,
               help="at most this many (default 20; with --parent every child)"),
           arg("--json", action="store_true"),
           *CLIENT)(_client("jobs"))

subcommand("verify", "render a command on several sides (CPU, CUDA, float64, float32, φ modes), "
           "against an uploaded reference or an earlier job, trace and compare; waits, fetches "
           "the report into DIR and exits 0 only when every criterion is met",
           arg("--side", action="append", metavar="DEVICE[:DTYPE[:PHI_MODE]]",
               help="a render side, e.g. cpu:float64, cuda:float64, cpu:float32:c-parity; "
                    "repeatable (default: cpu:float64 and cuda:float64)"),
           arg("--pixel", action="append", metavar="S,F",
               help="a pixel to trace (slow, fast); repeatable"),
           arg("--brightest", type=_count(0), default=0, metavar="N",
               help="also trace the N brightest pixels of the first side"),
           arg("--phi-mode", choices=("default", "c-parity"), default=None,
               help="the φ mode of the render sides that do not name one"),
           arg("--reference-image", metavar="FILE", default=None,
               help="a reference side: a raw float32 image (-floatfile layout)"),
           arg("--reference-trace", metavar="FILE", default=None,
               help="a reference side's trace log (the C program's TRACE_C lines)"),
           arg("--against", metavar="JOB", default=None,
               help="a side of an earlier finished job of yours"),
           arg("--tolerance", type=float, default=None,
               help="image max|A-B|/max|A| (default per pair, as nanobragg-parity)"),
           arg("--trace-tolerance", type=float, default=None,
               help="per trace line (default: the image tolerance; judges float32 traces)"),
           arg("--dir", default=None, help="where the report goes (default ./<job id>)"),
           arg("--label", default=None),
           arg("--timeout", type=float, default=None, help="seconds to wait"),
           arg("--quiet", action="store_true", help="no progress bar"),
           arg("nanobragg_args", nargs="*", metavar="-- NANOBRAGG ARGS",
               help="a nanoBragg command line after --; the files it names are uploaded"),
           *CLIENT)(_client("verify"))


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
