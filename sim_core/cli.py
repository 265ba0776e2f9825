"""``nanobragg``: the C program's command line on the PyTorch simulator.

    nanobragg -cell 100 100 100 90 90 90 -default_F 100 -lambda 6.2 -N 5 -distance 100 \\
              -detpixels 256 -floatfile float.bin -nonoise

It writes the same files with the same names and defaults as nanoBragg (floatimage.bin, intimage.img,
image.pgm, noiseimage.img unless -nonoise, Fdump.bin after reading -hkl), prints a summary of what it
rendered, and shows progress on renders that take more than a couple of seconds. Our own flags:
``-dtype float64|float32``, ``-device auto|cpu|cuda``, ``-phi_mode default|c-parity``,
``-trace_pixel S F`` (repeatable), ``-trace_file PATH``, ``-memory_mb N``, ``-compile auto|on|off``,
``-cbf FILE`` (a miniCBF of the int image), ``-nexus FILE`` (an NXmx NeXus/HDF5 file of the float,
int or noise image: ``-nexus_image``), and ``-images N`` / ``-first_image N`` for a rotation series:
N images of consecutive φ ranges (image n starts at ``-phi`` + (n − first)·``-osc``), each written
under numbered names (``intimage_00001.img``, …) with one line per image; the NeXus file of a series
is one file holding every image. With ``-random_orientations`` (``-orientation_seed N``,
``-shot_N`` ...) the images are stills, each crystal in its own random orientation (sim_core.stills),
and each image's ground truth is written beside it (``reflections_00001.csv``,
``crystal_00001.mat``, ``truth_00001.json``; sim_core.ground_truth), with ``experiments.expt`` for
the dataset.

Before anything is rendered the command is priced (:mod:`sim_core.preflight`): one that cannot fit
in this machine's memory or would take days is refused naming the flag, unless ``-force``.
``-help`` lists every flag of the table with its one-line description.
"""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path

from .errors import ArgumentError, SimCoreError

USAGE = """usage: nanobragg [nanoBragg flags]   (e.g. -mat A.mat -hkl P1.hkl -distance 100)
       nanobragg -help   for the list of flags
"""
#: the column where -help starts a flag's description
HELP_COLUMN = 34


def _values(row) -> str:
    """The value tokens of a flag, for -help: FILE, N, a|b, or the row's own wording
    (its ``what``, as in \"-roi needs xmin xmax ymin ymax\")."""
    if row.kind == "switch" or (row.kind == "ignored" and row.nargs == 0):
        return ""
    if row.kind == "file" or row.output or row.what == "a file name":
        return "FILE"
    if row.what:
        return re.sub(r"^an? (?=\w\w)", "", row.what)  # "a column label", not "a b c"
    one = {"str": "NAME", "choice": "|".join(row.choices)}.get(row.kind, "N")
    return " ".join([one] * row.nargs)


def _flag_line(row) -> str:
    left = f"  {row.name} {_values(row)}".rstrip()
    text = row.help + (f" (also {', '.join(row.aliases)})" if row.aliases else "")
    if len(left) + 2 > HELP_COLUMN:
        return f"{left}\n{'':{HELP_COLUMN}}{text}"
    return f"{left:{HELP_COLUMN}}{text}"


def help_text() -> str:
    """The usage and every flag of the table with its one-line description, nanoBragg's flags
    first, then ours."""
    from .flag_table import FLAGS

    lines = [USAGE.splitlines()[0], "", "nanoBragg's flags (lengths in mm, angles in degrees, "
             "wavelengths in A, unless said):"]
    lines += [_flag_line(r) for r in FLAGS if not r.ours]
    lines += ["", "our own flags:"]
    lines += [_flag_line(r) for r in FLAGS if r.ours]
    lines += ["", "Documentation: docs/sim_core.md. The files written and their default names are "
              "nanoBragg's."]
    return "\n".join(lines) + "\n"


class _Progress:
    """Percent lines on stderr, only for renders that run longer than ``after`` seconds."""

    def __init__(self, enabled: bool, after: float = 2.0):
        self.enabled = enabled
        self.after = after
        self.t0 = time.monotonic()
        self.last = -1.0
        self.shown = False
        self.tty = sys.stderr.isatty()

    def __call__(self, fraction: float):
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.t0 < self.after or now - self.last < 0.5 and fraction < 1.0:
            return
        self.last = now
        self.shown = True
        end = "\r" if self.tty and fraction < 1.0 else "\n"
        eta = (now - self.t0) * (1 - fraction) / fraction if fraction > 0 else float("nan")
        sys.stderr.write(f"{fraction * 100:5.1f}% done, {eta:6.1f} s left{end}")
        sys.stderr.flush()

    def close(self):
        if self.shown and self.tty:
            sys.stderr.write("\n")


def _summary(result, report, wrote: list[str]) -> str:
    exp = result.experiment
    det = exp.detector
    cfg = result.config
    cr = exp.crystal
    st = result.image_stats
    s = exp.sampling
    lines = [
        f"{det.convention} convention, pivot about the {det.pivot}",
        "unit cell: %g %g %g %g %g %g (A, deg)" % tuple(cr.cell_report["cell_A_deg"]),
        f"crystal: {cr.Na}x{cr.Nb}x{cr.Nc} cells, {cfg.crystal.shape} shape",
        f"detector: {det.fpixels}x{det.spixels} pixels of {float(det.pixel_size) * 1e3:g} mm, "
        f"distance {float(det.distance) * 1e3:g} mm (close {float(det.close_distance) * 1e3:g} mm)",
        f"  Fbeam={float(det.Fbeam):g} Sbeam={float(det.Sbeam):g}  Fclose={float(det.Fclose):g} "
        f"Sclose={float(det.Sclose):g} m",
        f"wavelength {cfg.beam.wavelength_A:g} A, {exp.beam.sources.count} sources, "
        f"{s.mosaic_domains} mosaic domains over {math.degrees(s.mosaic_spread):g} deg, "
        f"{s.phi_steps} phi steps from {math.degrees(s.phi0):g} to "
        f"{math.degrees(s.phi0 + s.osc):g} deg",
        f"{exp.oversample}x{exp.oversample} subpixels, {s.thickness.steps} sensor layers, "
        f"{exp.evaluations_per_pixel} evaluations per pixel, {result.stats.evaluations:,} in all",
        f"rendered on {result.device} in {result.dtype}: {result.elapsed_s:.3f} s, "
        f"{result.evaluations_per_second / 1e6:.1f} M evaluations/s",
        f"max_I = {st.max_I:g} at pixel (slow {st.max_slow}, fast {st.max_fast})",
        f"mean= {st.mean:g} rms= {st.rms:g} rmsd= {st.rmsd:g}",
    ]
    if report.int_scale is not None:
        lines.append(f"intfile_scale = {report.int_scale:g}")
    if report.noise is not None:
        lines.append(f"{report.noise.photons:.0f} photons on noise image "
                     f"({report.noise.overloads} overloads)")
    lines += [f"wrote {w}" for w in wrote]
    return "\n".join(lines)


def _write_image(result, parsed, wrote: list[str], *, number: int | None = None,
                 fdump: bool = True):
    """Write the files of one rendered image (numbered as image ``number`` of a series), the
    Fdump.bin cache after reading an HKL file, and the traces; returns the OutputReport."""
    from .experiment import is_fdump
    from .outputs import write_nanobragg_files
    from .series import numbered_name

    report = write_nanobragg_files(result, ".", number=number)
    wrote += [f"{p} ({kind})" for kind, p in report.paths.items()]
    sf = result.config.structure_factors
    from_text = sf.hkl_file and not is_fdump(Path(sf.hkl_file))
    if fdump and (from_text or sf.model_file or sf.mtz_file) and result.experiment.hkl_grid is not None:
        from .io.hkl import write_fdump
        write_fdump("Fdump.bin", result.experiment.hkl_grid)
        wrote.append("Fdump.bin (structure factor cache)")
    if result.traces:
        text = "".join(t.text for t in result.traces)
        if parsed.trace_file:
            name = parsed.trace_file if number is None else numbered_name(parsed.trace_file, number)
            Path(name).write_text(text)
            wrote.append(f"{name} (traces)")
        else:
            sys.stdout.write(text)
    return report


def _run_series(parsed, progress, cancel) -> int:
    """Every image of a ``-images N`` series: numbered files, one line per image, then the summary
    of the last image and series_metadata.json (every image's φ range and noise seed); the NeXus
    file (``-nexus``) is one file with every image as a frame."""
    import contextlib
    import json

    from .experiment import local_files
    from .io.nexus import NexusWriter, frame_pixels
    from .outputs import _atomic
    from .series import series_metadata, series_of
    from .simulate import render_series, with_seeds

    config = with_seeds(parsed.config)
    stills = config.scan.random_orientations
    total = len(series_of(config))
    per_kind: dict[str, list] = {}
    extra: list[str] = []
    records, image_paths = [], []
    result = report = None
    out = config.outputs
    with contextlib.ExitStack() as stack:
        nexus = stack.enter_context(NexusWriter(out.nexus_file, config, image=out.nexus_image)) \
            if out.nexus_file else None
        for k, (im, result) in enumerate(render_series(config, local_files("."),
                                                       progress=progress, cancel=cancel)):
            if k == 0:
                for note in result.experiment.notes:
                    print(f"note: {note}", file=sys.stderr)
            lines: list[str] = []
            report = _write_image(result, parsed, lines, number=im.n, fdump=k == 0)
            for kind, path in report.paths.items():
                per_kind.setdefault(kind, []).append(path)
            extra += lines[len(report.paths):]
            if nexus is not None:
                if k == 0:
                    nexus.mark_unrendered(result.experiment)
                nexus.write(k, frame_pixels(result, out.nexus_image, noise=report.noise))
            progress.close()
            if stills:
                from .stills import write_still_truth
                truth_paths, record = write_still_truth(config, result, im.n)
                for kind, path in truth_paths.items():
                    per_kind.setdefault(kind, []).append(path)
                records.append(record)
                image_paths.append(report.paths)
                m = result.config.crystal.misset_deg
                print(f"image {k + 1}/{total} (number {im.n}): still, misset {m[0]:.3f} "
                      f"{m[1]:.3f} {m[2]:.3f} deg, {record['reflections']} reflections, "
                      f"seed {im.seed}, {result.elapsed_s:.2f} s", flush=True)
                continue
            print(f"image {k + 1}/{total} (number {im.n}): phi {im.phi_start_deg:g} to "
                  f"{im.phi_start_deg + im.osc_deg:g} deg, seed {im.seed}, "
                  f"{result.elapsed_s:.2f} s", flush=True)
    meta = {"config": json.loads(config.canonical_json()), "series": series_metadata(config)}
    _atomic(Path("series_metadata.json"),
            lambda p: Path(p).write_text(json.dumps(meta, indent=1) + "\n"))
    wrote = [f"{paths[0]} ... {paths[-1]} ({kind}, {len(paths)} files)"
             for kind, paths in per_kind.items()]
    if out.nexus_file:
        wrote.append(f"{out.nexus_file} (nexus, {total} frames of the {out.nexus_image} image)")
    wrote += extra + ["series_metadata.json (every image's phi range and noise seed)"]
    if stills:
        from .stills import write_experiments
        write_experiments("experiments.expt", records, image_paths)
        wrote[-1] = "series_metadata.json (every image's noise seed, drawn orientation and values)"
        wrote.append("experiments.expt (the true crystal, beam and detector of every image)")
        print(f"stills dataset of {total} images from number {config.scan.first_image}, "
              f"orientation seed {config.scan.orientation_seed}, series seed "
              f"{config.noise.seed}; the last image:")
    else:
        print(f"series of {total} images from number {config.scan.first_image}, series seed "
              f"{config.noise.seed}; the last image:")
    print(_summary(result, report, wrote))
    return 0


def run(argv: list[str], cancel=None) -> int:
    from .nanobragg_args import parse_nanobragg_args
    from .preflight import check

    if not argv:
        sys.stderr.write(USAGE)
        return 2
    if argv[0] in ("-h", "-help", "--help"):
        sys.stdout.write(help_text())
        return 0
    parsed = parse_nanobragg_args(argv, base_dir=Path("."), allow_fdump=True)
    # priced before the simulator (and torch) is loaded: a command this machine cannot run is
    # refused at once
    warnings = parsed.warnings + check(parsed.config, argv, ".", force=parsed.force)
    for w in warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    from .experiment import local_files
    from .simulate import simulate

    progress = _Progress(parsed.progress)
    if parsed.config.scan.images > 1 or parsed.config.scan.random_orientations:
        return _run_series(parsed, progress, cancel)
    result = simulate(parsed.config, local_files("."), progress=progress, cancel=cancel)
    progress.close()
    for note in result.experiment.notes:
        print(f"note: {note}", file=sys.stderr)
    wrote: list[str] = []
    report = _write_image(result, parsed, wrote)
    print(_summary(result, report, wrote))
    return 0


def main(argv: list[str] | None = None, cancel=None) -> int:
    from .errors import RenderCancelled

    argv = sys.argv[1:] if argv is None else argv
    try:
        return run(argv, cancel)
    except RenderCancelled:
        print("nanobragg: interrupted", file=sys.stderr)
        return 130
    except ArgumentError as exc:
        if len(exc.errors) > 1:
            print(f"nanobragg: {len(exc.errors)} errors:", file=sys.stderr)
            for e in exc.errors:
                print(f"nanobragg: error: {e}", file=sys.stderr)
        else:
            print(f"nanobragg: error: {exc}", file=sys.stderr)
        return 2
    except SimCoreError as exc:
        print(f"nanobragg: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nanobragg: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        # what the price check let through (-force, or memory taken by others meanwhile)
        print("nanobragg: error: out of memory while rendering; see the warnings above, or ask "
              "for fewer pixels (-detpixels), a smaller -roi or a smaller -memory_mb",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
