"""Seeds chosen from the clock, as nanoBragg chooses them, fixed in the config so that a run can be
repeated (torch-free: the API fixes them before it queues a job)."""

from __future__ import annotations

import time

from .config import SimulationConfig


def choose_seed() -> int:
    """A seed from the clock, as nanoBragg picks one when none is given (recorded by the caller)."""
    return int(time.time())


def with_seeds(config: SimulationConfig) -> SimulationConfig:
    """A copy of ``config`` whose clock-chosen seeds are fixed, so that the run can be repeated."""
    cfg = config.model_copy(deep=True)
    if cfg.noise.seed is None:
        cfg.noise.seed = choose_seed()
    if cfg.crystal.misset_random and cfg.crystal.misset_seed is None:
        cfg.crystal.misset_seed = cfg.noise.seed
    if cfg.scan.random_orientations and cfg.scan.orientation_seed is None:
        # as a random misset's seed: the noise seed (its size, the stills' seeds are >= 0)
        cfg.scan.orientation_seed = abs(cfg.noise.seed)
    return cfg


__all__ = ["choose_seed", "with_seeds"]
