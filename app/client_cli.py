"""The client subcommands of ``bragg`` (submit, status, wait, fetch, trace, cancel, jobs).

What a script may capture goes to standard output (a job id, a folder, a trace, JSON); messages,
progress bars and tables for people go to standard error, so that ``ID=$(bragg submit ...)`` works.
Exit status: 0 done, 1 the job failed or was canceled, 2 a usage or API error, 3 unreachable service.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .client import ApiError, BraggClient, ClientError


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _client(args: argparse.Namespace) -> BraggClient:
    return BraggClient(args.url, args.token)


def run(fn, args: argparse.Namespace) -> int:
    """Run a client command, turning the client's errors into messages and exit codes."""
    try:
        with _client(args) as bc:
            return fn(bc, args)
    except ApiError as exc:
        _err(f"bragg {args.command}: error {exc.describe()}")
        return 2
    except ClientError as exc:
        _err(f"bragg {args.command}: error: {exc}")
        return 3 if "cannot reach" in str(exc) else 2


def _summary(rec: dict) -> str:
    parts = [f"job {rec['id']}", rec["status"]]
    if rec["status"] == "running":
        parts.append(f"{100 * rec['progress']:.0f}%")
    parts.append(f"{rec['shape'][1]}x{rec['shape'][0]} pixels" if rec.get("shape") else "")
    parts.append(f"{rec['evaluations']:,} evaluations")
    if rec.get("device"):
        parts.append(f"device {rec['device']}")
    return ", ".join(p for p in parts if p)


# -- submit ----------------------------------------------------------------------------------------
def submit(bc: BraggClient, args: argparse.Namespace) -> int:
    options = {"trace_pixels": [list(p) for p in args.trace] if args.trace else None,
               "outputs": args.outputs, "device": args.device, "dtype": args.dtype,
               "label": args.label}
    if bool(args.config) == bool(args.nanobragg_args):
        _err("bragg submit: give --config FILE or a nanoBragg command line after --, e.g.\n"
             "  bragg submit -- -cell 100 100 100 90 90 90 -default_F 100 -lambda 6.2 -N 5 "
             "-distance 100 -detpixels 256")
        return 2
    if args.config:
        rec = bc.submit_file(Path(args.config), **options)
    else:
        rec = bc.submit_args(args.nanobragg_args, base_dir=Path.cwd(), **options)
    _err(f"submitted {_summary(rec)}")
    for w in rec.get("warnings") or []:
        _err(f"  warning: {w}")
    print(rec["id"], flush=True)
    return 0


# -- status, jobs, cancel --------------------------------------------------------------------------
def status(bc: BraggClient, args: argparse.Namespace) -> int:
    rec = bc.get(args.job_id)
    if args.json:
        print(json.dumps(rec, indent=2))
        return 0
    print(_summary(rec))
    if rec.get("error"):
        print(f"error: {rec['error']['type']}: {rec['error']['message']}")
    for a in rec["artifacts"]:
        print(f"  {a['name']:<28} {a['size']:>12,} bytes")
    return 0


def jobs(bc: BraggClient, args: argparse.Namespace) -> int:
    recs = bc.jobs(status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps(recs, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("id", "status", "progress", "created", "shape", "label"):
        table.add_column(col, no_wrap=True)
    for r in recs:
        table.add_row(r["id"], r["status"], f"{100 * r['progress']:.0f}%",
                      (r.get("created_at") or "")[:19].replace("T", " "),
                      "x".join(str(x) for x in reversed(r.get("shape") or [])),
                      r.get("label") or "")
    # a terminal gets a table that fits it; a pipe or a file gets whole lines
    Console(width=None if sys.stdout.isatty() else 400).print(table)
    if not recs:
        _err("no jobs")
    return 0


def cancel(bc: BraggClient, args: argparse.Namespace) -> int:
    rec = bc.cancel(args.job_id)
    if rec["status"] == "canceled":
        _err(f"job {rec['id']} canceled")
    else:
        _err(f"job {rec['id']} is {rec['status']}: it stops at its next chunk")
    print(rec["status"])
    return 0


# -- wait ------------------------------------------------------------------------------------------
class ProgressView:
    """A rich progress bar on standard error, fed with job records."""

    def __init__(self, job_id: str, quiet: bool = False):
        from rich.console import Console
        from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn)

        self.quiet = quiet
        self.progress = Progress(TextColumn("[bold]{task.fields[status]:<9}"), BarColumn(),
                                 TaskProgressColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.description}"),
                                 console=Console(stderr=True), disable=quiet, transient=False)
        self.task = self.progress.add_task(job_id[:12], total=1.0, status="…")

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def update(self, rec: dict) -> None:
        self.progress.update(self.task, completed=float(rec["progress"]), status=rec["status"])


def wait(bc: BraggClient, args: argparse.Namespace) -> int:
    with ProgressView(args.job_id, quiet=args.quiet) as view:
        rec = bc.wait(args.job_id, timeout=args.timeout, on_update=view.update)
    return _ended(rec)


def _ended(rec: dict) -> int:
    if rec["status"] == "finished":
        _err(f"{_summary(rec)}; `bragg fetch {rec['id']}` downloads its "
             f"{len(rec['artifacts'])} files")
        print(rec["status"])
        return 0
    err = rec.get("error") or {}
    _err(f"job {rec['id']} {rec['status']}" + (f": {err.get('type')}: {err.get('message')}"
                                              if err else ""))
    print(rec["status"])
    return 1


# -- fetch, trace ----------------------------------------------------------------------------------
def fetch(bc: BraggClient, args: argparse.Namespace) -> int:
    dest = Path(args.dir) if args.dir else Path(args.job_id)
    paths = bc.fetch(args.job_id, dest)
    total = sum(p.stat().st_size for p in paths)
    for p in paths:
        _err(f"  {p.name:<28} {p.stat().st_size:>12,} bytes")
    _err(f"{len(paths)} files, {total:,} bytes; sha256.txt verified")
    print(dest)
    return 0


def trace(bc: BraggClient, args: argparse.Namespace) -> int:
    text = bc.trace(args.job_id, args.slow, args.fast, timeout=args.timeout,
                    on_update=lambda r: _err(f"trace job {r['id']}: {r['status']}")
                    if r["status"] in ("queued", "finished") else None)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
