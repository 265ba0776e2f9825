"""Finished jobs written straight into a test deployment's store and Redis, the way a worker
publishes one (record created, started, files committed, record finished through the guarded
transitions), for images a test render would take too long to make: a 2463 x 2527 detector. The
API then serves them through its real routes."""

from __future__ import annotations

import uuid

import numpy as np

from jobs.job import Job, JobStatus
from jobs.records import Records, now
from jobs.records.jobs import OwnerLimits
from jobs.store import LocalStore
from sim_core.config import load_config
from sim_core.io.png import write_png_preview
from jobs.artifacts import seal
from jobs.kinds.render import detector_description

WRITER = "test-writer"


def store_finished_job(service, owner: str, config: dict, image: np.ndarray,
                       label: str = "") -> str:
    """A finished render job of ``config`` whose float image (floatimage.bin) is ``image``.
    Returns its id."""
    cfg = load_config(config)
    shape = image.shape
    records = Records(service.redis, "bragg")
    store = LocalStore(service.data_dir)
    job_id = uuid.uuid4().hex
    job = Job(
        id=job_id, owner=owner, kind="render", label=label, status=JobStatus.queued,
        created_at=now(), requested_device="cpu", device="cpu", dtype="float32",
        config=cfg.canonical_json(), config_sha256=cfg.config_sha256(), outputs=["float", "png"],
        shape=list(shape), evaluations=int(np.prod(shape)), timeout_s=60, max_attempts=1,
    )
    code, _ = records.create(job, OwnerLimits(jobs=1000))
    assert code == 1
    status, attempt = records.start(job_id, WRITER, "cpu", 60)
    assert status == "running"
    staging = store.staging_dir(job_id, attempt)
    np.asarray(image, dtype="<f4").tofile(staging / "floatimage.bin")
    write_png_preview(staging / "preview.png", image)
    artifacts = seal(staging)
    store.commit(job_id, staging)
    out = records.finish(job_id, owner, WRITER, attempt, "finished",
                         {"artifacts": [a.model_dump() for a in artifacts], "progress": "1",
                          "geometry": detector_description(cfg)})
    assert out == "finished", out
    return job_id


def spots_image(shape: tuple[int, int], spots: int, seed: int = 1,
                background: float = 0.0) -> np.ndarray:
    """A synthetic diffraction-like image: single- and few-pixel spots on an optional noisy
    background (seeded)."""
    rng = np.random.default_rng(seed)
    S, F = shape
    img = (rng.exponential(background, size=shape) if background > 0
           else np.zeros(shape)).astype(np.float32)
    ss = rng.integers(1, S - 1, spots)
    ff = rng.integers(1, F - 1, spots)
    peak = rng.uniform(50, 5000, spots).astype(np.float32)
    img[ss, ff] += peak
    img[ss + 1, ff] += 0.2 * peak
    img[ss, ff + 1] += 0.1 * peak
    return img
