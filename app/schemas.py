"""Request and response records of the REST API (v1), with the examples shown in /openapi.json.

The simulation itself is sim_core's :class:`~sim_core.config.SimulationConfig` (pydantic only, no
torch): a job is submitted either as that config or as a nanoBragg command line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim_core.config import SimulationConfig
from sim_core.inputs import KINDS
from sim_core.output_formats import BY_KEY, DEFAULT_OUTPUTS as FORMAT_DEFAULTS, SERVICE_OUTPUTS

from jobs.job import JobKind, JobStatus

NonNeg = Annotated[int, Field(ge=0)]
Pixel = tuple[NonNeg, NonNeg]
#: the outputs a job may ask for (sim_core.output_formats)
Output = Literal[SERVICE_OUTPUTS]  # type: ignore[valid-type]
Status = Literal[tuple(s.value for s in JobStatus)]  # type: ignore[valid-type]
DEFAULT_OUTPUTS: list[str] = list(FORMAT_DEFAULTS)

#: the example input files (app/examples/files): the examples name them by their real ids, so
#: that after uploading them every example of this document is accepted by its route
EXAMPLE_FILES = Path(__file__).parent / "examples" / "files"


def example_file_id(name: str) -> str:
    """The uploaded id of an example file (the API documentation's examples name them)."""
    return "sha256:" + hashlib.sha256((EXAMPLE_FILES / name).read_bytes()).hexdigest()


EXAMPLE_FILE_ID = example_file_id("P1.hkl")
EXAMPLE_MATRIX_ID = example_file_id("A.mat")
EXAMPLE_CONFIG = {
    "crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}, "Na": 5, "Nb": 5, "Nc": 5},
    "structure_factors": {"default_F": 100},
    "beam": {"wavelength_A": 6.2},
    "detector": {"distance_mm": 100, "fast_pixels": 256, "slow_pixels": 256},
}
EXAMPLE_ARGS = ["-mat", "A.mat", "-hkl", "P1.hkl", "-lambda", "1.0", "-N", "6", "-distance", "100",
                "-detpixels", "256", "-pixel", "0.2"]


class FileRecord(BaseModel):
    id: str = Field(description="'sha256:<hex>' of the bytes: the same bytes give the same id")
    name: str
    size: int
    kind: Literal[tuple(KINDS)]  # the upload kinds of sim_core.inputs
    summary: dict = Field(default_factory=dict,
                          description="what the upload check read: for HKL the reflection count, "
                                      "index ranges, grid points and F range; for a matrix its "
                                      "values; the number of sources; the mask's shape; for a "
                                      "model or MTZ file its cell, space group, atoms or "
                                      "reflections")
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": EXAMPLE_FILE_ID, "name": "P1.hkl", "size": 69, "kind": "hkl",
         "summary": {"format": "hkl", "count": 5, "h": [-1, 1], "k": [0, 1], "l": [0, 1],
                     "grid_points": 12, "F_min": 60.0, "F_max": 120.0, "finite": True}}]})


class JobSubmission(BaseModel):
    """Give ``config`` or ``nanobragg_args`` (with ``files`` mapping the file names it uses to
    uploaded ids). ``trace_pixels``, ``device`` and ``dtype`` override the config's run options."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"config": EXAMPLE_CONFIG, "trace_pixels": [[128, 128]], "label": "cubic 256"},
        {"nanobragg_args": EXAMPLE_ARGS,
         "files": {"A.mat": EXAMPLE_MATRIX_ID, "P1.hkl": EXAMPLE_FILE_ID},
         "outputs": ["float", "smv", "noise", "png"], "device": "auto", "dtype": "float64"},
    ]})

    config: Optional[SimulationConfig] = Field(
        None, description="the simulation; input files are uploaded ids 'sha256:<hex>'")
    nanobragg_args: Optional[list[Annotated[str, Field(max_length=4096)]]] = Field(
        None, max_length=4096, description="a nanoBragg command line (without the program name)")
    files: dict[str, str] = Field(
        default_factory=dict,
        description="file name used in nanobragg_args -> uploaded id (nanobragg_args form only)")
    trace_pixels: list[Pixel] = Field(default_factory=list,
                                      description="(slow, fast) pixels to trace")
    outputs: list[Output] = Field(default_factory=lambda: list(DEFAULT_OUTPUTS),
                                  description="files to write: images ('cbf' a miniCBF of the "
                                              "int image), and 'hkl' the P1 structure "
                                              "factors of a model or MTZ file")
    device: Optional[Literal["auto", "cpu", "cuda"]] = None
    dtype: Optional[Literal["float64", "float32"]] = None
    label: Optional[Annotated[str, Field(max_length=200)]] = None

    @model_validator(mode="after")
    def _one_form(self) -> "JobSubmission":
        if (self.config is None) == (self.nanobragg_args is None):
            raise ValueError("give exactly one of 'config' and 'nanobragg_args'")
        if self.files and self.nanobragg_args is None:
            raise ValueError("'files' goes with 'nanobragg_args'; a config names uploaded ids "
                             "directly")
        return self


class TraceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"pixels": [[10, 20], [128, 129]]}]})
    pixels: list[Pixel] = Field(min_length=1)


class Artifact(BaseModel):
    name: str
    size: int
    sha256: str
    url: str


class JobError(BaseModel):
    type: str
    message: str


EXAMPLE_JOB = {
    "id": "3f9a0c2b7d4e4f1a9b8c7d6e5f4a3b2c", "kind": JobKind.render.value, "parent": None,
    "label": "cubic 256", "status": "finished", "progress": 1.0,
    "created_at": "2026-01-01T12:00:00.000Z", "started_at": "2026-01-01T12:00:00.012Z",
    "finished_at": "2026-01-01T12:00:01.350Z", "device": "cpu", "dtype": "float64",
    "config_sha256": "5d1c" * 16, "error": None,
    "artifacts": [{"name": BY_KEY["float"].artifact, "size": 262144, "sha256": "ab12" * 16,
                   "url": "/v1/jobs/3f9a0c2b7d4e4f1a9b8c7d6e5f4a3b2c/artifacts/floatimage.bin"}],
    "outputs": ["float", "smv", "png"], "trace_pixels": [[128, 128]], "shape": [256, 256],
    "evaluations": 65536, "timeout_s": 61, "attempts": 1, "worker": "host.1234.cpu",
    "warnings": [], "cancel_requested": False, "series": None, "image_numbers": [],
}


class SeriesFailure(BaseModel):
    images: list[int]
    error: JobError


class SeriesInfo(BaseModel):
    images: int = Field(description="images of the series")
    first_image: int = Field(description="the number of its first image (file numbering)")
    images_done: int
    images_failed: int
    images_canceled: int
    children: int = Field(description="child jobs (one or a few consecutive images each)")
    children_ended: int
    failures: list[SeriesFailure] = Field(description="the images of each failed child, and why")
    children_url: str
    image_url: str = Field(description="template of an image's artifact URL ({n}, {name})")
    dataset_url: str = Field(description="the whole dataset as one zip, once finished")


class JobRecord(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_JOB]})
    id: str
    kind: Literal[tuple(k.value for k in JobKind)]  # type: ignore[valid-type]
    parent: Optional[str] = Field(None, description="for a trace job: the job whose config it "
                                                    "traces; for a child job: its series")
    label: Optional[str]
    status: Status
    progress: float = Field(ge=0, le=1)
    created_at: str
    started_at: Optional[str]
    finished_at: Optional[str]
    device: str = Field(description="the device asked for; once running, the device used")
    dtype: str
    config_sha256: str
    error: Optional[JobError]
    artifacts: list[Artifact]
    outputs: list[str]
    trace_pixels: list[Pixel]
    shape: list[int] = Field(description="(slow, fast) pixels of the detector")
    evaluations: int
    timeout_s: int
    attempts: int
    worker: Optional[str]
    warnings: list[str]
    cancel_requested: bool
    series: Optional[SeriesInfo] = Field(None, description="a series (kind 'series'): its images "
                                                           "and how far they are")
    image_numbers: list[int] = Field(default_factory=list,
                                     description="a child of a series: the images it renders")
    verification: Optional[dict] = Field(
        None, description="a verification (kind 'verification'): its sides, pixels, tolerances and "
                          "verdict; the report is its artifacts report.json and report.md")


class JobList(BaseModel):
    jobs: list[JobRecord]
    next_cursor: Optional[str] = Field(None, description="pass as ?cursor= for the next page")
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"jobs": [EXAMPLE_JOB], "next_cursor": "41"}]})


class TracePixelState(BaseModel):
    pixel: Pixel
    status: Literal["ready", "pending"]
    job: str
    url: str


class TraceSubmission(BaseModel):
    trace_job: Optional[JobRecord]
    pixels: list[TracePixelState]


class ErrorItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    field: str = Field(description="the dotted path of the field, query parameter or flag at fault")
    message: str
    line: Optional[int] = Field(None, description="an input file's line at fault")
    column: Optional[str] = Field(None, description="an MTZ file's column at fault")
    limit: Optional[str] = Field(None, description="the deployment's limit crossed (a setting)")
    value: Optional[int] = Field(None, description="the value priced against the limit")
    allowed: Optional[int] = Field(None, description="the limit's value")


class ErrorBody(BaseModel):
    """Every error answer (4xx, 503) of the API, whatever the route's success answer is."""

    model_config = ConfigDict(extra="allow")
    detail: str
    errors: Optional[list[ErrorItem]] = Field(None, description="422: every field at fault")
    hint: Optional[str] = Field(None, description="what to do about it")
    trace_job: Optional[str] = Field(None, description="a trace not ready yet: the job tracing it")


#: an example error body of each status the API answers with
ERROR_EXAMPLES = {
    401: {"detail": "missing bearer token", "hint": "send 'Authorization: Bearer <token>' (the "
                                                    "bragg command: --token TOKEN or "
                                                    "BRAGG_TOKEN=TOKEN)"},
    404: {"detail": "job 3f9a0c2b7d4e4f1a9b8c7d6e5f4a3b2c not found"},
    409: {"detail": "job is running, not finished"},
    413: {"detail": "the request body exceeds BRAGG_MAX_BODY_BYTES"},
    422: {"detail": "invalid request", "errors": [
        {"field": "config.detector.fast_pixels", "message": "Input should be greater than 0"}]},
    429: {"detail": "alice would have 50,001 unfinished images with this submission; the limit "
                    "max_queued_images_per_owner is 50,000",
          "errors": [{"field": "(owner)", "limit": "max_queued_images_per_owner", "value": 50001,
                      "allowed": 50000, "message": "unfinished images of alice with this "
                                                   "submission: 50,001; the limit "
                                                   "max_queued_images_per_owner is 50,000",
                      "unfinished": {"jobs": 11, "images": 50001,
                                     "evaluations": 3200064000}}],
          "hint": "try again in 40 s, when more of your work has rendered, or cancel some of it"},
    503: {"detail": "the job store (Redis) is unavailable", "hint": "try again later"},
}


def error_responses(*codes: int) -> dict:
    examples = ERROR_EXAMPLES
    return {c: {"model": ErrorBody, "content": {"application/json": {"example": examples[c]}}}
            for c in codes}


__all__ = ["JobSubmission", "JobRecord", "JobList", "FileRecord", "TraceRequest", "Artifact",
           "TraceSubmission", "error_responses", "DEFAULT_OUTPUTS", "EXAMPLE_JOB"]
