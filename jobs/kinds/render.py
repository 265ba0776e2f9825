"""A render: one image (a single job), or the images ``image_numbers`` of a series (a child job),
with every output the job asked for, its traces and its reproducibility files."""

from __future__ import annotations

import re
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Optional

from sim_core.errors import InputFileError, SimCoreError
from sim_core.output_formats import (BY_KEY, COMMANDS, RUN_METADATA, image_artifact,
                                      nexus_data_name, trace_name)

from jobs.artifacts import metadata, write_json
from jobs.commands import commands_text
from jobs.context import WorkerServices
from jobs.job import Job, parse_file_id
from jobs.running import RunningJob, RunResult
from jobs.store import write_atomic

DESCRIPTION = "an image (or a series child's images) with the outputs asked for"


def price(per_image: int, *, images: int = 1, pixels: int = 0, detector_pixels: int = 0) -> int:
    return per_image * images


class SeriesGone(SimCoreError):
    """A child job whose series record is gone (removed by retention)."""


class NonFiniteImage(SimCoreError):
    """Every pixel of the image is infinite or NaN: there is nothing to publish."""


def run(ctx: WorkerServices, job: Job, running: RunningJob, device: str,
        staging: Path) -> RunResult:
    from sim_core.config import load_config

    # a series child renders images of its parent's config; a verification's render side
    # (a child with a config of its own: device, dtype, φ mode) renders that one image
    if job.is_series_child and not job.config:
        return _render_images(ctx, job, running, device, staging)
    return _render_image(ctx, job, running, device, staging, load_config(job.config),
                         progress=running.progress)


def _render_images(ctx: WorkerServices, job: Job, running: RunningJob, device: str,
                   staging: Path) -> RunResult:
    """A child of a series: render each of its images, ``image_config(series config, n)``, into
    artifacts numbered like the nanobragg command's files (``floatimage_00003.bin``)."""
    from sim_core.config import load_config
    from sim_core.series import image_config, series_image
    from sim_core.stills import write_still_truth

    parent = ctx.records.get(job.parent)
    if parent is None or not parent.config:
        raise SeriesGone(f"the series {job.parent} of this job no longer exists")
    series = load_config(parent.config)
    numbers = list(job.image_numbers)
    total = RunResult(device=device, warnings=list(job.warnings))
    config = None
    with ExitStack() as stack:
        nexus = stack.enter_context(_nexus_data_file(series, numbers, staging)) \
            if "nexus" in job.outputs else None
        for k, n in enumerate(numbers):
            running.check()
            part = (lambda f, k=k: running.progress((k + f) / len(numbers)))
            # a still's ground truth lies beside its image
            truth = (lambda result, n=n: write_still_truth(series, result, n, staging)) \
                if series.scan.random_orientations else None
            config = image_config(series, n)
            one = _render_image(ctx, job, running, device, staging, config,
                                progress=part, number=n, nexus=nexus, frame=k,
                                image=dict(series_image(series, n).as_dict(), series=job.parent),
                                after=truth)
            total.evaluations += one.evaluations
            total.render_s += one.render_s
            total.device = one.device
            total.warnings = one.warnings
    # the record keeps one detector description: the last image's (described once, not per image)
    total.fields = {"geometry": detector_description(config)}
    return total


def _nexus_data_file(series, numbers: list[int], staging: Path):
    """The NXmx file of a child's images (``image_data_<first>.nxs``), written frame by frame as
    they are rendered; the series' master file links every child's (``sim_core.io.nexus_master``).
    It is renamed into place only once every frame is in."""
    from sim_core.io.nexus import NexusWriter
    from sim_core.series import series_image

    images = [series_image(series, n) for n in numbers]
    return NexusWriter(staging / nexus_data_name(min(numbers)), series,
                       image=series.outputs.nexus_image,
                       phi_starts_deg=[im.phi_start_deg for im in images],
                       osc_deg=images[0].osc_deg)


def _render_image(ctx: WorkerServices, job: Job, running: RunningJob, device: str, staging: Path,
                  config, *, progress: Callable[[float], None], number: Optional[int] = None,
                  image: Optional[dict] = None, nexus=None, frame: int = 0,
                  after: Optional[Callable[..., object]] = None) -> RunResult:
    """Render one image and write its artifacts into ``staging``: named as a single job's, or
    for image ``number`` of a series numbered (``intimage_00003.img``, ``run_metadata_00003.json``)
    and, given the child's NeXus ``nexus`` writer, as its frame ``frame``; ``after(result)``
    writes what else the image has (a still's ground truth)."""
    from sim_core.io.nexus import frame_pixels
    from sim_core.outputs import write_outputs
    from sim_core.simulate import simulate

    def name(n: str) -> str:
        return image_artifact(n, number)

    result = simulate(config, input_resolver(ctx), progress=progress, cancel=running.should_stop,
                      device=device, dtype=config.run.dtype)
    running.check()
    warnings = list(job.warnings)
    non_finite = check_finite(result.image, warnings)
    files = {k: name(BY_KEY[k].artifact) for k in job.outputs if k in BY_KEY}
    if after is not None:  # a still's truth writer writes its reflections with the rest
        files.pop("reflections", None)
    # the P1 table is one file for every image of a series: written once
    if "hkl" in files and (staging / files["hkl"]).exists():
        del files["hkl"]
    if number is not None:
        files.pop("nexus", None)  # a series image is a frame of its child's NeXus data file
    report = write_outputs(result, staging, files)
    if nexus is not None:
        if frame == 0:  # every image of a series renders the same pixels
            nexus.mark_unrendered(result.experiment)
        nexus.write(frame, frame_pixels(result, config.outputs.nexus_image, noise=report.noise))
    if job.trace_brightest:
        result.traces += _trace_brightest(ctx, job, result, device, running)
    for t in result.traces:
        write_atomic(staging / name(trace_name(t.slow, t.fast)), t.text)
    if after is not None:
        after(result)
    hkl_name = name(BY_KEY["hkl"].artifact) if ("hkl" in job.outputs
                                                and result.experiment.hkl_grid is not None) else None
    write_atomic(staging / name(COMMANDS),
                 commands_text(job.id, result.config, job.file_names,
                               ctx.versions.get("project"), hkl_artifact=hkl_name,
                               cell=result.experiment.crystal.cell_report["cell_A_deg"]))
    result.experiment.notes = [clean_message(ctx, job, n) for n in result.experiment.notes]
    # the API noted what the config and the upload summaries tell; what only the built experiment
    # knows (the reach of a model's table, say) joins the job's warnings here
    warnings += [f"note: {n}" for n in result.experiment.notes if f"note: {n}" not in warnings]
    md = metadata(ctx, job, attempt=running.attempt, started=running.started, ended=time.time(),
                  result=result, report=report, peak_memory=running.peak_memory(device),
                  traces=[(t.slow, t.fast) for t in result.traces], warnings=warnings)
    md["non_finite_pixels"] = non_finite
    if image is not None:
        md["series_image"] = image
    write_json(staging / name(RUN_METADATA), md)
    return RunResult(device=result.device, evaluations=int(result.evaluations),
                     render_s=result.elapsed_s, warnings=warnings,
                     fields={"geometry": detector_description(config)} if number is None else {})


def _trace_brightest(ctx: WorkerServices, job: Job, result, device: str,
                     running: RunningJob) -> list:
    """Traces of the job's ``trace_brightest`` brightest rendered pixels not traced yet (a
    verification side traces the brightest pixels of its own image)."""
    import numpy as np

    from sim_core.simulate import trace_pixels

    image = np.nan_to_num(np.asarray(result.image, dtype=np.float64), nan=-np.inf)
    rendered = np.asarray(result.experiment.render_pixels())
    if not rendered.size:
        return []
    order = rendered[np.argsort(-image.reshape(-1)[rendered], kind="stable")]
    done = {(t.slow, t.fast) for t in result.traces}
    pixels = [p for p in (divmod(int(i), image.shape[1]) for i in order[:job.trace_brightest
                                                                        + len(done)])
              if p not in done][:job.trace_brightest]
    return trace_pixels(result.config, pixels, input_resolver(ctx), device=device,
                        dtype=result.config.run.dtype, cancel=running.should_stop)


def detector_description(config) -> dict:
    """The detector of ``config`` as plain numbers (the viewer's d, 2θ, rings, beam centre)."""
    from sim_core.geometry.detector import build_detector
    from sim_core.geometry.resolution import beam_direction, describe_detector
    from sim_core.lab_frame import resolve_frame

    frame = resolve_frame(config)
    return describe_detector(build_detector(config.detector, frame), beam_direction(frame),
                             config.beam.wavelength_A)


def check_finite(image, warnings: list[str]) -> dict:
    """Count the image's inf and NaN pixels; add a warning (the C program writes such images too),
    or fail the job when no pixel is finite."""
    import numpy as np

    img = np.asarray(image)
    nan = int(np.count_nonzero(np.isnan(img)))
    inf = int(np.count_nonzero(np.isinf(img)))
    if nan + inf and nan + inf == img.size:
        raise NonFiniteImage(f"the image is entirely non-finite ({inf:,} inf and {nan:,} NaN "
                             f"pixels of {img.size:,}): the fluence, structure factors or geometry "
                             "overflow double precision")
    if nan + inf:
        warnings.append(f"the image has {inf:,} inf and {nan:,} NaN pixels of {img.size:,} "
                        "(values beyond double precision; they are 0 in the SMV images)")
    return {"inf": inf, "nan": nan}


def input_resolver(ctx: WorkerServices) -> Callable[[str], Path]:
    """Uploaded file ids -> their paths in the store."""
    def resolve(ref: str) -> Path:
        digest = parse_file_id(ref)
        if digest is None:
            raise InputFileError(f"{ref}: not an uploaded file id")
        return ctx.store.input_path(digest)
    return resolve


def clean_message(ctx: WorkerServices, job: Job, message: str) -> str:
    """Store paths are internal: name input files as the user named them."""
    files_root = str(ctx.store.input_path("0" * 64).parent.parent) + "/"

    def repl(m):
        ref = f"sha256:{m.group(1)}"
        return job.file_names.get(ref, ref)

    return re.sub(re.escape(files_root) + r"[0-9a-f]{2}/([0-9a-f]{64})", repl, message)


__all__ = ["DESCRIPTION", "price", "run", "check_finite", "input_resolver", "clean_message",
           "SeriesGone", "NonFiniteImage"]
