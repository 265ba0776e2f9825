"""The library entry point: ``simulate(config)`` renders an image (and traces) from a config.

    >>> from sim_core.config import load_config
    >>> from sim_core.simulate import simulate
    >>> result = simulate(load_config({
    ...     "crystal": {"cell": {"a_A": 50, "b_A": 50, "c_A": 50}, "Na": 2, "Nb": 2, "Nc": 2},
    ...     "structure_factors": {"default_F": 10},
    ...     "detector": {"fast_pixels": 8, "slow_pixels": 8},
    ...     "run": {"trace_pixels": [[4, 4]]}}))
    >>> result.image.shape      # float32 numpy array (slow, fast), as nanoBragg's -floatfile
    (8, 8)
    >>> result.traces[0].text.splitlines()[0]   # TRACE_PY lines of the traced pixel
    'TRACE_PY_CONFIG: tracing pixel (spixel=4, fpixel=4)'

The web service and the command line both go through here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch

from .config import SimulationConfig
from .engine import CancelFn, Engine, ProgressFn, Recorder, RenderStats, SequenceState
from .errors import ConfigError
from .experiment import Experiment, FileResolver, build_experiment, check_device
from .image import ImageStats, image_stats
from .seeds import with_seeds
from .series import SeriesImage, image_config, series_of
from .trace import PixelTrace, build_trace

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class SimulationResult:
    config: SimulationConfig
    experiment: Experiment
    image: np.ndarray  # float32 (slow, fast)
    traces: list[PixelTrace]
    stats: RenderStats
    image_stats: ImageStats
    device: str
    dtype: str
    elapsed_s: float
    seeds: dict = field(default_factory=dict)

    @property
    def evaluations(self) -> int:
        return self.stats.evaluations

    @property
    def evaluations_per_second(self) -> float:
        return self.stats.evaluations / self.elapsed_s if self.elapsed_s > 0 else 0.0


def make_engine(exp: Experiment, device: str | None = None, dtype: str | None = None) -> Engine:
    run = exp.config.run
    dev = check_device(device or run.device)
    return Engine(exp, device=dev, dtype=_DTYPES[dtype or run.dtype],
                  memory_budget_mb=run.memory_budget_mb)


def simulate(config: SimulationConfig, files: FileResolver | None = None, *,
             progress: ProgressFn | None = None, cancel: CancelFn | None = None,
             device: str | None = None, dtype: str | None = None,
             params: dict | None = None, experiment: Experiment | None = None) -> SimulationResult:
    """Render ``config``; trace the pixels of ``config.run.trace_pixels`` with the same engine."""
    config = with_seeds(config)
    t0 = time.perf_counter()
    exp = experiment or build_experiment(config, files, params=params)
    engine = make_engine(exp, device, dtype)
    image_t, stats = engine.render(progress=progress, cancel=cancel)
    traces = trace_with(engine, config.run.trace_pixels, stats.sequence)
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    image = image_t.detach().to("cpu", torch.float32).numpy()
    elapsed = time.perf_counter() - t0
    return SimulationResult(
        config=config, experiment=exp, image=image, traces=traces, stats=stats,
        image_stats=image_stats(image, exp.roi, exp.mask), device=str(engine.device),
        dtype=str(engine.dtype).replace("torch.", ""), elapsed_s=elapsed, seeds=dict(exp.seeds))


def render_series(config: SimulationConfig, files: FileResolver | None = None, *,
                  images: Iterable[int] | None = None, progress: ProgressFn | None = None,
                  cancel: CancelFn | None = None, device: str | None = None,
                  dtype: str | None = None) -> Iterator[tuple[SeriesImage, SimulationResult]]:
    """Render the images of the series ``config`` one after the other: (image, result) pairs.

    The seeds are fixed once for the whole series (``with_seeds``: a clock-chosen noise seed is the
    series seed, a random misset's seed is fixed with it), then image ``n`` is
    ``simulate(image_config(config, n))``: the same crystal and mosaic domains for every image, its
    own φ range and noise seed (``result.config`` holds them). ``images``: the numbers to render
    (default: all). ``progress`` gets the fraction of the whole series. Structure factors read from
    a file are parsed once (the reader keeps them cached).
    """
    config = with_seeds(config)
    plan = series_of(config)
    wanted = None if images is None else set(images)
    if wanted is not None:
        known = {im.n for im in plan}
        if not wanted <= known:
            raise ConfigError(f"images {sorted(wanted - known)} are not in the series (images "
                              f"{plan[0].n} to {plan[-1].n})", field="scan.images")
        plan = [im for im in plan if im.n in wanted]
    for k, im in enumerate(plan):
        part = None if progress is None else \
            (lambda f, k=k: progress((k + f) / len(plan)))
        yield im, simulate(image_config(config, im.n), files, progress=part, cancel=cancel,
                           device=device, dtype=dtype)


def trace_with(engine: Engine, pixels, state: SequenceState | None = None, *,
               progress: ProgressFn | None = None, cancel: CancelFn | None = None
               ) -> list[PixelTrace]:
    """Trace ``pixels`` [(slow, fast), ...] with ``engine`` (``state``: from the full render).

    ``progress`` gets the fraction of pixels traced; ``cancel`` is checked between chunks.
    """
    if not pixels:
        return []
    exp = engine.exp
    S, F = exp.shape
    order = exp.render_pixels()
    out = []
    state = state or SequenceState()
    for i, (slow, fast) in enumerate(pixels):
        if not (0 <= slow < S and 0 <= fast < F):
            raise ConfigError(f"trace pixel ({slow}, {fast}) is outside the {F}x{S} detector",
                              field="run.trace_pixels")
        lin = slow * F + fast
        rank = int(np.searchsorted(order, lin))
        if rank >= order.size or order[rank] != lin:
            raise ConfigError(f"trace pixel ({slow}, {fast}) is not rendered (outside the ROI or "
                              "masked)", field="run.trace_pixels")
        rec = Recorder()
        engine.render(pixel_subset=np.array([lin]), state=state, recorders={lin: rec},
                      cancel=cancel)
        out.append(build_trace(engine, rec, slow, fast, state, rank))
        if progress is not None:
            progress((i + 1) / len(pixels))
    return out


def trace_pixels(config: SimulationConfig, pixels, files: FileResolver | None = None, *,
                 device: str | None = None, dtype: str | None = None,
                 progress: ProgressFn | None = None, cancel: CancelFn | None = None
                 ) -> list[PixelTrace]:
    """Trace pixels without rendering the whole image (order-dependent state is scanned for)."""
    config = with_seeds(config)
    exp = build_experiment(config, files)
    return trace_with(make_engine(exp, device, dtype), pixels, progress=progress, cancel=cancel)


__all__ = ["simulate", "render_series", "trace_pixels", "SimulationResult", "with_seeds", "make_engine"]
