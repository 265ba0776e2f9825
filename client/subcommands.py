"""The client subcommands of ``bragg`` (submit, status, wait, fetch, trace, cancel, jobs, verify).

A series (a rotation dataset: one parent job, child jobs that render its images) is shown by its
image counts, waited for image by image, fetched as one verified dataset zip, and its children
listed with ``jobs --parent``.

What a script may capture goes to standard output (a job id, a folder, a trace, JSON); messages,
progress bars and tables for people go to standard error, so that ``ID=$(bragg submit ...)`` works.
Exit status: 0 done, 1 the job failed or was canceled, 2 a usage or API error, 3 unreachable service.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from client.api_client import ApiError, BraggClient, ClientError


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
        if exc.status_code == 401:  # the command's options, not the HTTP header
            exc.hint = ("give the token with --token TOKEN or BRAGG_TOKEN=TOKEN"
                        if exc.detail.startswith("missing") else
                        "the token given (--token or BRAGG_TOKEN) is not one of this service's")
        _err(f"bragg {args.command}: error {exc.describe()}")
        return 2
    except ClientError as exc:
        _err(f"bragg {args.command}: error: {exc}")
        return 3 if "cannot reach" in str(exc) else 2


def _ranges(numbers) -> str:
    """Image numbers as ranges: [1, 2, 3, 5] -> "1-3, 5"."""
    out: list[str] = []
    run: list[int] = []
    for n in sorted(numbers):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def _series_images(s: dict, status: str) -> str:
    """A series' images for a summary: "images 10/36" while it runs, "36 images" otherwise."""
    n, first = s["images"], s["first_image"]
    numbers = f" ({first}-{first + n - 1})" if first != 1 else ""
    if status == "running":
        return f"images {s['images_done']}/{n}{numbers}"
    text = f"{n} images{numbers}"
    for key in ("failed", "canceled"):
        if s.get(f"images_{key}"):
            text += f", {s[f'images_{key}']} {key}"
    return text


def _summary(rec: dict) -> str:
    series = rec.get("series")
    parts = [f"{'series' if series else 'job'} {rec['id']}", rec["status"]]
    if series:
        parts.append(_series_images(series, rec["status"]))
    elif rec["status"] == "running":
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
    series = {"images": args.images, "first_image": args.first_image}
    if args.config:
        rec = bc.submit_file(Path(args.config), **series, **options)
    else:
        rec = bc.submit_args(args.nanobragg_args, base_dir=Path.cwd(), **series, **options)
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
    if rec.get("parent") and rec.get("image_numbers"):
        print(f"images {_ranges(rec['image_numbers'])} of series {rec['parent']}")
    s = rec.get("series")
    if s:
        first = s["first_image"]
        print(f"images: {s['images']} ({first}-{first + s['images'] - 1}); "
              f"{s['images_done']} done, {s['images_failed']} failed, "
              f"{s['images_canceled']} canceled")
        print(f"children: {s['children']} jobs, {s['children_ended']} ended; "
              f"`bragg jobs --parent {rec['id']}` lists them")
        for line in _failure_lines(s):
            print(line)
        if rec["status"] == "finished":
            print(f"dataset: `bragg fetch {rec['id']}` downloads every image, run_metadata.json, "
                  "commands.txt and sha256.txt as one verified zip")
    for a in rec["artifacts"]:
        print(f"  {a['name']:<28} {a['size']:>12,} bytes")
    return 0


def _failure_lines(s: dict) -> list[str]:
    """One line per failure of a series: its images and the reason."""
    out = []
    for f in s.get("failures") or []:
        err = f.get("error") or {}
        images = f.get("images") or []
        out.append(f"  image{'s' if len(images) != 1 else ''} {_ranges(images)}: "
                   f"{err.get('type', 'error')}: {err.get('message', '')}")
    return out


def jobs(bc: BraggClient, args: argparse.Namespace) -> int:
    if args.parent:  # every child unless --limit says otherwise
        recs = bc.jobs(status=args.status, limit=args.limit, parent=args.parent)
    else:
        recs = bc.jobs(status=args.status, limit=20 if args.limit is None else args.limit)
    if args.json:
        print(json.dumps(recs, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("id", "status", "progress", "images", "created", "shape", "label"):
        table.add_column(col, no_wrap=True)
    for r in recs:
        s = r.get("series")
        table.add_row(r["id"], r["status"], f"{100 * r['progress']:.0f}%",
                      f"{s['images_done']}/{s['images']}" if s
                      else _ranges(r.get("image_numbers") or []),
                      (r.get("created_at") or "")[:19].replace("T", " "),
                      "x".join(str(x) for x in reversed(r.get("shape") or [])),
                      r.get("label") or "")
    # a terminal gets a table that fits it; a pipe or a file gets whole lines
    Console(width=None if sys.stdout.isatty() else 400).print(table)
    if not recs:
        _err(f"series {args.parent} has no child jobs" if args.parent else "no jobs")
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
    """A rich progress bar on standard error, fed with job records: a job's bar is its fraction
    done ("42%"); a series' bar counts its images ("images 10/36", the total its images)."""

    def __init__(self, job_id: str, quiet: bool = False):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = quiet
        self.progress = Progress(TextColumn("[bold]{task.fields[status]:<9}"), BarColumn(),
                                 TextColumn("{task.fields[amount]}"), TimeElapsedColumn(),
                                 TextColumn("{task.description}"),
                                 console=Console(stderr=True), disable=quiet, transient=False)
        self.task = self.progress.add_task(job_id[:12], total=1.0, status="…", amount="")

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def update(self, rec: dict) -> None:
        s = rec.get("series")
        if s:
            self.progress.update(self.task, total=s["images"], completed=s["images_done"],
                                 status=rec["status"],
                                 amount=f"images {s['images_done']}/{s['images']}")
        else:
            p = float(rec["progress"])
            self.progress.update(self.task, completed=p, status=rec["status"],
                                 amount=f"{100 * p:>3.0f}%")


def wait(bc: BraggClient, args: argparse.Namespace) -> int:
    bc.get(args.job_id)  # an unknown id is said before a progress bar is drawn
    with ProgressView(args.job_id, quiet=args.quiet) as view:
        rec = bc.wait(args.job_id, timeout=args.timeout, on_update=view.update)
    return _ended(rec)


def _ended(rec: dict) -> int:
    s = rec.get("series")
    if rec["status"] == "finished":
        what = (f"its dataset ({s['images']} images, verified)" if s
                else f"its {len(rec['artifacts'])} files")
        _err(f"{_summary(rec)}; `bragg fetch {rec['id']}` downloads {what}")
        print(rec["status"])
        return 0
    err = rec.get("error") or {}
    if s and s["failures"]:  # each failure is listed below, the first one too
        _err(f"series {rec['id']} {rec['status']}")
    else:
        _err(f"{'series' if s else 'job'} {rec['id']} {rec['status']}"
             + (f": {err.get('type')}: {err.get('message')}" if err else ""))
    if s:
        _err(f"  {s['images_done']} of {s['images']} images done, {s['images_failed']} failed, "
             f"{s['images_canceled']} canceled")
        for line in _failure_lines(s):
            _err(line)
    print(rec["status"])
    return 1


# -- fetch, trace ----------------------------------------------------------------------------------
def fetch(bc: BraggClient, args: argparse.Namespace) -> int:
    dest = Path(args.dir) if args.dir else Path(args.job_id)
    paths = bc.fetch(args.job_id, dest)
    sizes = {p: p.stat().st_size for p in paths}
    for name, count, size in _file_groups(paths, sizes, dest):
        label = name if count == 1 else f"{count} x {name}"
        _err(f"  {label:<28} {size:>12,} bytes")
    _err(f"{len(paths)} files, {sum(sizes.values()):,} bytes; sha256.txt verified")
    print(dest)
    return 0


_NUMBERED = re.compile(r"_\d{5,}(?=\.[^.]*$|$)")


def _file_groups(paths: list[Path], sizes: dict, folder: Path) -> list[tuple[str, int, int]]:
    """(name, files, bytes) per file in ``folder``, the numbered files of a series taken together
    (``floatimage_00001.bin`` ... as ``floatimage_#####.bin``), in first-seen order."""
    groups: dict[str, list[int]] = {}
    for p in paths:
        key = _NUMBERED.sub(lambda m: "_" + "#" * (len(m.group()) - 1),
                            p.relative_to(folder).as_posix())
        g = groups.setdefault(key, [0, 0])
        g[0] += 1
        g[1] += sizes[p]
    return [(name, n, size) for name, (n, size) in groups.items()]


def trace(bc: BraggClient, args: argparse.Namespace) -> int:
    problem = _trace_problem(bc.get(args.job_id), args.slow, args.fast, args.image)
    if problem:
        _err(f"bragg trace: error: {problem}")
        return 2
    text = bc.trace(args.job_id, args.slow, args.fast, image=args.image, timeout=args.timeout,
                    on_update=lambda r: _err(f"trace job {r['id']}: {r['status']}")
                    if r["status"] in ("queued", "finished") else None)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


# -- verify ----------------------------------------------------------------------------------------
def _side(text: str) -> dict:
    """``cpu:float64`` or ``cuda:float32:c-parity`` -> a render side."""
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or parts[0] not in ("cpu", "cuda", "auto") or (
            len(parts) > 1 and parts[1] not in ("float64", "float32")) or (
            len(parts) > 2 and parts[2] not in ("default", "c-parity")):
        raise ClientError(f"--side {text!r}: expected DEVICE[:DTYPE[:PHI_MODE]], e.g. cpu:float64 "
                          "or cuda:float64:c-parity (devices cpu, cuda, auto; dtypes float64, "
                          "float32; φ modes default, c-parity)")
    side = {"device": parts[0]}
    if len(parts) > 1:
        side["dtype"] = parts[1]
    if len(parts) > 2:
        side["phi_mode"] = parts[2]
    return side


def _pixel(text: str) -> list[int]:
    m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", text)
    if not m:
        raise ClientError(f"--pixel {text!r}: expected S,F (slow, fast), e.g. 685,1039")
    return [int(m.group(1)), int(m.group(2))]


def verify(bc: BraggClient, args: argparse.Namespace) -> int:
    """Submit a verification, follow it, fetch the report (verified against sha256.txt) and
    print the verdict: exit 0 only when every criterion is met."""
    if not args.nanobragg_args:
        _err("bragg verify: give a nanoBragg command line after --, e.g.\n"
             "  bragg verify --side cpu:float64 --side cuda:float64 -- -mat A.mat -hkl P1.hkl "
             "-N 8 -phisteps 5 -osc 0.5 -detpixels 128 -distance 100")
        return 2
    sides = [_side(s) for s in (args.side or [])]
    if not sides and not args.reference_image and not args.reference_trace and not args.against:
        sides = [{"device": "cpu", "dtype": "float64"}, {"device": "cuda", "dtype": "float64"}]
    rec = bc.verify(args.nanobragg_args, sides, base_dir=Path.cwd(),
                    pixels=[_pixel(p) for p in args.pixel or []], brightest=args.brightest,
                    phi_mode=args.phi_mode, reference_image=args.reference_image,
                    reference_trace=args.reference_trace, against=args.against,
                    tolerance=args.tolerance, trace_tolerance=args.trace_tolerance,
                    label=args.label)
    names = ", ".join(s["name"] for s in rec["verification"]["sides"])
    _err(f"submitted verification {rec['id']}: {names}")
    for w in rec.get("warnings") or []:
        _err(f"  warning: {w}")
    with ProgressView(rec["id"], quiet=args.quiet) as view:
        rec = bc.wait(rec["id"], timeout=args.timeout, on_update=view.update)
    if rec["status"] != "finished":
        return _ended(rec)
    dest = Path(args.dir) if args.dir else Path(rec["id"])
    bc.fetch(rec["id"], dest)
    report = json.loads((dest / "report.json").read_text())
    def g(v) -> str:
        return (("0" if v == 0 else f"{v:.3g}") if isinstance(v, float) else str(v))

    for c in report["criteria"]:
        _err(f"  {'✔' if c['ok'] else '✘'} {c['name']}: {g(c['value'])} (threshold "
             f"{g(c['threshold'])})" + (f" — {c['detail']}" if c["detail"] else ""))
    met = sum(c["ok"] for c in report["criteria"])
    _err(f"{report['verdict'].upper()}: {met} of {len(report['criteria'])} criteria met; the "
         f"report and its files are in {dest} (sha256.txt verified)")
    print(dest)
    return 0 if report["verdict"] == "pass" else 1


def _trace_problem(rec: dict, slow: int, fast: int, image: int | None) -> str | None:
    """Why pixel (slow, fast) of ``rec`` cannot be traced, in the command's terms (S, F,
    --image), or None."""
    rows, cols = rec["shape"]
    series = rec.get("series")
    if series and image is None:
        first = series["first_image"]
        return (f"series {rec['id']} traces one image at a time: give --image N "
                f"(N = {first}..{first + series['images'] - 1})")
    if not (0 <= slow < rows and 0 <= fast < cols):
        return (f"pixel S={slow} F={fast} is outside the detector of job {rec['id']}: "
                f"S is 0..{rows - 1}, F is 0..{cols - 1}")
    return None
