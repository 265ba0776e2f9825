"""The job: its kinds, statuses and fields, defined once.

``JobKind`` names the kinds of job (each is a module of ``jobs.kinds``), ``JobStatus`` every status
a job can be in and ``TRANSITIONS`` every move between them (each move is one guarded Lua script in
``jobs.records.scripts``). ``Job`` is the record's fields with their types, and what the records,
the routes and the worker pass around; ``Job.from_hash`` and ``Job.to_hash`` are the only
conversion between it and the Redis hash. ``FileRecord`` is an uploaded file's record.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field



class JobKind(str, Enum):
    """What a job does; ``jobs.kinds.KINDS`` says how each kind is queued, run and shown."""

    render = "render"
    trace = "trace"
    series = "series"
    verification = "verification"


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    finished = "finished"
    failed = "failed"
    canceled = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.finished, JobStatus.failed, JobStatus.canceled})

#: (from, to) -> the script of jobs.records that makes the move, and when
TRANSITIONS = {
    (None, JobStatus.queued): "CREATE: a submission, in its owner's line until ADMIT lets it "
                              "onto its queue (in the outbox until a worker starts it)",
    (JobStatus.queued, JobStatus.running): "START: a worker takes the job's current queue entry",
    (JobStatus.queued, JobStatus.canceled): "CANCEL",
    (JobStatus.queued, JobStatus.failed): "FAIL_QUEUED: no live worker serves its device within "
                                          "the queue timeout (NoWorker)",
    (JobStatus.running, JobStatus.finished): "FINISH: the attempt holding the lease publishes",
    (JobStatus.running, JobStatus.failed): "FINISH (engine error, timeout, disk error) or "
                                           "REQUEUE with no attempts left (WorkerLost)",
    (JobStatus.running, JobStatus.canceled): "FINISH after a cancel seen between chunks, or "
                                             "REQUEUE of a lost job with a pending cancel",
    (JobStatus.running, JobStatus.queued): "REQUEUE: the lease expired, attempts are left",
}

#: the moves of a series (kind ``series``): the parent has no queue entry of its own; its children
#: (one or a few images each) move as above, and ROLLUP moves the parent after each child's move
SERIES_TRANSITIONS = {
    (None, JobStatus.queued): "CREATE_LAZY_SERIES: the parent and its children's shared fields; "
                              "ADMIT makes each child as the owner's turn comes",
    (JobStatus.queued, JobStatus.running): "ROLLUP: a child started",
    (JobStatus.queued, JobStatus.canceled): "ROLLUP: the last child ended, a cancel was asked for",
    (JobStatus.running, JobStatus.finished): "ROLLUP: the last child ended, every image finished",
    (JobStatus.running, JobStatus.failed): "ROLLUP: the last child ended, an image failed after "
                                           "its retries",
    (JobStatus.running, JobStatus.canceled): "ROLLUP: the last child ended, a cancel was asked for",
}

#: the moves of a verification (kind ``verification``): its render sides are children moving as
#: above; when the last has ended ROLLUP queues the parent itself for its report step, which a
#: worker then runs as any job (START, FINISH; REQUEUE should its worker die)
VERIFICATION_TRANSITIONS = {
    (None, JobStatus.queued): "CREATE_SERIES: the parent and every render side in one script "
                              "(CREATE with its queue entry when no side renders)",
    (JobStatus.queued, JobStatus.running): "ROLLUP: a side started; or START of the report",
    (JobStatus.running, JobStatus.queued): "ROLLUP: the last side ended: the report is queued "
                                           "(in the outbox)",
    (JobStatus.queued, JobStatus.canceled): "ROLLUP: the last side ended, a cancel was asked "
                                            "for; or CANCEL of the queued report",
    (JobStatus.running, JobStatus.finished): "FINISH: the report is written",
    (JobStatus.running, JobStatus.failed): "FINISH: the report could not be written",
}

_FILE_ID = re.compile(r"^sha256:([0-9a-f]{64})$")


def parse_file_id(ref: str) -> Optional[str]:
    """The hex digest of an uploaded file id ``sha256:<hex>`` (None if it is not one)."""
    m = _FILE_ID.match(ref or "")
    return m.group(1) if m else None


#: fields stored as JSON text in the hash
JSON_FIELDS = ("outputs", "trace_pixels", "file_names", "warnings", "artifacts", "shape",
               "image_numbers", "failures", "geometry", "verification")


class Artifact(BaseModel):
    """A published file of a job: its stored name, size and sha256."""

    name: str
    size: int = 0
    sha256: str = ""


class FileRecord(BaseModel):
    """An uploaded file an owner may use: its id ``sha256:<hex>``, the name it was uploaded as, its
    size, its upload kind (a row of ``sim_core.inputs``) and the summary made at upload."""

    id: str
    name: str
    size: int
    kind: str
    created_at: float = 0.0
    summary: dict = Field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.id.removeprefix("sha256:")

    def public(self) -> dict:
        """What the API shows of it."""
        return {"id": self.id, "name": self.name, "size": self.size, "kind": self.kind,
                "summary": self.summary}


class Job(BaseModel):
    """A job record. Extra fields stored in the hash are kept (``model_extra``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    owner: str
    kind: JobKind = JobKind.render
    parent: str = ""
    label: str = ""
    status: JobStatus = JobStatus.queued
    progress: float = 0.0
    created_at: Optional[float] = None
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    requested_device: str = "auto"
    device: str = ""
    dtype: str = ""
    config: str = ""
    config_sha256: str = ""
    outputs: list[str] = Field(default_factory=list)
    trace_pixels: list[list[int]] = Field(default_factory=list)
    file_names: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    #: the detector as plain numbers (``sim_core.geometry.resolution.describe_detector``), written
    #: by the worker that rendered it: the API answers d and 2θ from it without torch
    geometry: dict = Field(default_factory=dict)
    shape: list[int] = Field(default_factory=list)
    evaluations: int = 0
    timeout_s: int = 0
    attempts: int = 0
    max_attempts: int = 1
    worker: str = ""
    cancel: bool = False
    queue: str = ""
    rq_id: str = ""
    error_type: str = ""
    error_message: str = ""
    requeued_reason: str = ""
    #: a child of a series: the numbers of the images it renders
    image_numbers: list[int] = Field(default_factory=list)
    #: a series (kind ``series``): its images, their numbering, its children and how they ended
    images: int = 0
    first_image: int = 1
    children: int = 0
    #: a series: its children made so far (ADMIT makes them one at a time as its turns come)
    children_made: int = 0
    children_ended: int = 0
    images_done: int = 0
    images_failed: int = 0
    images_canceled: int = 0
    failures: list[dict] = Field(default_factory=list)
    #: a series: the running children's share of its images (progress)
    images_partial: float = 0.0
    cancel_requested_at: Optional[float] = None
    #: a verification (kind ``verification``): its sides, pixels and tolerances
    #: (``jobs.kinds.verification``); on a side's render: its name, and how many of its brightest
    #: pixels it traces besides ``trace_pixels``
    verification: dict = Field(default_factory=dict)
    trace_brightest: int = 0
    #: a verification's report: "pass" when every criterion is met, else "fail"
    verdict: str = ""
    seq: int = 0
    version: int = 0

    @classmethod
    def from_hash(cls, raw: dict) -> "Job":
        """The hash as Redis returns it (bytes or str) -> a Job; unset ("") fields take their
        defaults."""
        fields = {k: v for k, v in decode_hash(raw).items() if v != ""}
        if "cancel" in fields:
            fields["cancel"] = fields["cancel"] in ("1", True)
        return cls.model_validate(fields)

    def to_hash(self) -> dict[str, str]:
        """The Job -> flat string fields for HSET."""
        return encode_fields(self.model_dump(mode="json"))

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_series(self) -> bool:
        """A series' record (kind ``series``): its images are its children's."""
        return self.kind is JobKind.series

    @property
    def is_series_child(self) -> bool:
        """A child job of a series (it renders ``image_numbers`` of its parent's config), or a
        render side of a verification (its own config; ``image_numbers`` is its side number)."""
        return bool(self.parent and self.image_numbers)

    @property
    def has_children(self) -> bool:
        """A series or a verification: child jobs roll up into it."""
        return self.children > 0

    @property
    def etag(self) -> str:
        return f'"{self.id}.{self.version}"'

    def artifact(self, name: str) -> Optional[Artifact]:
        """The published artifact stored as ``name`` (None if the job has none)."""
        return next((a for a in self.artifacts if a.name == name), None)

    def image_range(self) -> range:
        """The image numbers of the job: a series' numbering, or image 1 of a single job."""
        if self.is_series:
            return range(self.first_image, self.first_image + self.images)
        return range(1, 2)


def decode_hash(raw: dict) -> dict:
    """A job hash as stored (bytes) -> a dict of strings with the JSON fields parsed."""
    rec = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
           for k, v in raw.items()}
    for k in JSON_FIELDS:
        if k in rec and rec[k] != "":
            rec[k] = json.loads(rec[k])
    return rec


def encode_fields(fields: dict) -> dict[str, str]:
    """Values of a job hash as Redis stores them: JSON for lists and dicts, "" for None, 1/0."""
    out: dict[str, str] = {}
    for k, v in fields.items():
        if isinstance(v, Enum):
            v = v.value
        if isinstance(v, (list, dict, tuple)):
            v = json.dumps(v, separators=(",", ":"))
        elif v is None:
            v = ""
        elif isinstance(v, bool):
            v = "1" if v else "0"
        out[k] = v if isinstance(v, (str, bytes)) else str(v)
    return out


__all__ = ["Job", "JobKind", "JobStatus", "Artifact", "FileRecord", "parse_file_id",
           "TERMINAL_STATUSES", "TRANSITIONS", "SERIES_TRANSITIONS",
           "VERIFICATION_TRANSITIONS", "JSON_FIELDS", "decode_hash",
           "encode_fields"]
