"""Service settings: environment variables and an optional ``.env`` file (pydantic-settings).

Every setting is documented, with its default, in docs/configuration.md. Names are ``BRAGG_<FIELD>``
in upper case, except ``REDIS_URL`` (``BRAGG_REDIS_URL`` is accepted too).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


@dataclass(frozen=True)
class OwnerLimits:
    """An owner's limits of unfinished (queued and running) work: jobs (a series or a verification
    counts once), images (a series counts those it has left) and evaluations; 0: no limit."""

    jobs: int = 0
    images: int = 0
    evaluations: int = 0

    def words(self, images: int, evaluations: int) -> str:
        """ARGV[1] of the creating scripts: the limits and the new job's cost."""
        return f"{self.jobs} {self.images} {self.evaluations} {images} {evaluations}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRAGG_", env_file=".env", extra="ignore",
                                      populate_by_name=True)

    # -- components -------------------------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0",
                           validation_alias=AliasChoices("REDIS_URL", "BRAGG_REDIS_URL"))
    #: prefix of every Redis key and RQ queue name of this deployment
    namespace: str = Field("bragg", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    data_dir: Path = Path("./data")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)

    # -- authentication ---------------------------------------------------------------------------
    #: ``owner:token`` pairs separated by commas
    tokens: str = ""
    #: a file of ``owner:token`` lines (``#`` comments allowed), read in addition to ``tokens``
    tokens_file: Optional[Path] = None
    #: the owner of every request when no tokens are configured (loopback only)
    anonymous_owner: str = "local"

    # -- limits -----------------------------------------------------------------------------------
    max_detector_pixels: int = Field(4096 * 4096, ge=1)
    max_evaluations: int = Field(20_000_000_000, ge=1)
    max_upload_bytes: int = Field(256 * 1024 * 1024, ge=1)
    #: unfinished (queued or running) jobs one owner may have (a series counts once)
    max_queued_jobs_per_owner: int = Field(100, ge=1)
    #: unfinished images one owner may have (a series counts the images it has left)
    max_queued_images_per_owner: int = Field(50_000, ge=1)
    #: unfinished evaluations one owner may have (a series: those of the images it has left)
    max_queued_evaluations_per_owner: int = Field(10_000_000_000_000, ge=1)
    max_trace_pixels: int = Field(64, ge=1)
    #: points of an HKL file's grid (the box of its index ranges; 8 bytes each in a worker)
    max_hkl_grid_points: int = Field(16_777_216, ge=1)
    #: sources of a job (divergence points x dispersion steps, or the lines of a source file)
    max_sources: int = Field(100_000, ge=1)
    #: crystal orientations of a job (phi steps x mosaic domains)
    max_orientations: int = Field(1_000_000, ge=1)
    #: bytes of a job's structure-factor table (a float64 per point of the box of its Miller
    #: indices: an HKL file's ranges, or a model's or MTZ file's P1 table to the detector's reach),
    #: checked at submission by arithmetic; the default is the worker's own grid limit
    #: (sim_core.cost.MAX_SF_TABLE_BYTES, 200,000,000 points)
    max_sf_table_bytes: int = Field(1_600_000_000, ge=1)
    #: a worker's memory for a job's arrays (images, structure factors, orientations, sources)
    max_job_memory_bytes: int = Field(2 * 1024 ** 3, ge=1)
    #: size of a JSON request body, checked before it is read
    max_body_bytes: int = Field(1024 * 1024, ge=1)
    #: images of one series (scan.images)
    max_series_images: int = Field(3600, ge=1)
    #: evaluations of one series (all its images together)
    max_series_evaluations: int = Field(1_000_000_000_000, ge=1)
    #: a series' consecutive images are grouped into child jobs of about this many evaluations
    #: (an image of more is a child of its own)
    series_child_evaluations: int = Field(50_000_000, ge=1)
    #: entries waiting on each RQ queue at most: the other jobs wait in their owners' lines and
    #: are let on in turn (jobs.admission), so that no owner's backlog delays another owner's job
    queue_window: int = Field(2, ge=1)
    #: a job queued for a device that no live worker serves fails after this many seconds
    queue_timeout_s: float = Field(300.0, gt=0)

    # -- job timeouts and retries -----------------------------------------------------------------
    #: timeout = base + evaluations / rate, at most job_timeout_max_s
    job_timeout_base_s: float = Field(60.0, gt=0)
    job_timeout_min_rate: float = Field(200_000.0, gt=0)
    job_timeout_max_s: float = Field(6 * 3600.0, gt=0)
    #: extra attempts after a worker died mid-job (0 = fail at once)
    job_retries: int = Field(2, ge=0, le=10)

    # -- workers ------------------------------------------------------------------------------------
    #: seconds between a worker's heartbeats (worker key, job lease, progress)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    #: a job whose lease is this old is considered abandoned (its worker died)
    lease_ttl_s: int = Field(10, ge=2)
    #: seconds between recovery sweeps (lost leases, jobs on no queue); one process at a time
    reaper_interval_s: float = Field(2.0, gt=0)
    #: how long a worker keeps trying to publish a finished render while Redis is unreachable
    redis_outage_max_s: float = Field(600.0, gt=0)
    #: shortest interval between two progress writes of a running job
    progress_interval_s: float = Field(0.5, gt=0)
    #: shortest interval between two cancel checks of a running job
    cancel_check_interval_s: float = Field(0.2, gt=0)
    worker_warmup: bool = True
    #: CPU threads of a worker's renders (0: torch's default, every core); with several CPU
    #: workers on one machine, cores / workers keeps them from competing for the same cores
    worker_threads: int = Field(0, ge=0, le=1024)

    # -- retention (swept by the API's sweeper) ----------------------------------------------------
    #: finished, failed and canceled jobs (record and artifacts) are kept this long after they end
    job_retention_s: float = Field(3 * 86400.0, gt=0)
    #: uploads that no queued or running job uses are kept this long after their last use
    upload_retention_s: float = Field(7 * 86400.0, gt=0)
    #: temporary files and folders (interrupted uploads, staging folders) older than this go
    tmp_max_age_s: float = Field(3600.0, gt=0)
    #: seconds between two retention passes
    retention_interval_s: float = Field(60.0, gt=0)
    #: how long an Idempotency-Key of POST /v1/jobs is remembered
    idempotency_ttl_s: int = Field(86400, ge=1)

    # -- API ----------------------------------------------------------------------------------------
    #: poll interval of the Server-Sent Events stream
    events_poll_s: float = Field(0.25, gt=0)
    #: keep-alive comment interval of the events stream
    events_keepalive_s: float = Field(15.0, gt=0)
    #: import the simulator in the background when the API starts (first submission is faster)
    api_preload_simulator: bool = True
    #: assumed evaluations per second for the Retry-After estimate
    retry_after_rate: float = Field(5_000_000.0, gt=0)
    #: seconds an idle connection stays open after a response (uvicorn's keep-alive timeout)
    http_keepalive_s: int = Field(5, ge=1)
    #: seconds a request's headers may take to arrive, from the connection or its first byte
    http_header_timeout_s: float = Field(10.0, gt=0)
    #: seconds a request's body may pause between two pieces
    http_body_timeout_s: float = Field(30.0, gt=0)
    #: open connections per API process; one more is closed as it is accepted
    http_max_connections: int = Field(1000, ge=1)
    #: connections the kernel queues before the API accepts them, and the most the event loop
    #: accepts in one turn (a flood is taken in slices, with other requests answered between)
    http_backlog: int = Field(256, ge=1)
    #: bytes of a request's line and headers
    http_max_header_bytes: int = Field(16 * 1024, ge=1024)
    #: region, info and profile requests of one API process that work on pixels at once (the
    #: others wait): bounds the API's memory under many viewers
    image_work_concurrency: int = Field(4, ge=1)
    #: uploads of this many bytes or more are summarized in a child process (0: every upload),
    #: which shares no GIL with the event loop
    upload_summary_process_bytes: int = Field(1024 * 1024, ge=0)
    #: steps below the API's OS priority at which its upload summary processes run
    work_nice: int = Field(10, ge=0, le=19)
    #: downloads up to this size are checked against their sha256 before the answer starts
    #: (larger ones while they stream, ending it short on a mismatch)
    artifact_check_first_bytes: int = Field(8 * 1024 * 1024, ge=0)
    log_level: str = "info"
    #: test-only fault injection (never set in production): "exit-after-record" makes the API
    #: process exit between writing a job's record and enqueueing it
    fault_injection: str = ""

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    # -- derived ----------------------------------------------------------------------------------
    def token_table(self) -> dict[str, str]:
        """owner -> token from ``tokens`` and ``tokens_file`` (the file wins on duplicates)."""
        table: dict[str, str] = {}
        entries = [e for e in self.tokens.split(",") if e.strip()]
        if self.tokens_file is not None:
            for line in Path(self.tokens_file).read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    entries.append(line)
        for entry in entries:
            owner, sep, token = entry.strip().partition(":")
            owner, token = owner.strip(), token.strip()
            if not sep or not owner or not token:
                raise ValueError(f"bad token entry {entry.strip()[:20]!r}: expected owner:token")
            table[owner] = token
        return table

    def owner_of(self, token: str, table: dict[str, str]) -> Optional[str]:
        found = None
        for owner, expected in table.items():
            if hmac.compare_digest(token.encode(), expected.encode()):
                found = owner
        return found

    def owner_limits(self) -> OwnerLimits:
        """The limits of an owner's unfinished work, as the creating scripts take them."""
        return OwnerLimits(self.max_queued_jobs_per_owner, self.max_queued_images_per_owner,
                           self.max_queued_evaluations_per_owner)

    def job_timeout(self, evaluations: int) -> int:
        t = self.job_timeout_base_s + evaluations / self.job_timeout_min_rate
        return int(min(self.job_timeout_max_s, t)) + 1


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


__all__ = ["Settings", "get_settings"]
