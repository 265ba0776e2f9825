"""Response records of the viewer, trace and health routes, declared for /openapi.json.

The routes build these answers as plain dicts (the viewer's from numpy, /readyz from the live
workers); these models only state their shape, so that a client generated from the document gets
typed answers. Each keeps unknown fields (``extra="allow"``): a field added to an answer later is
passed through by older generated clients, not refused.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

_OPEN = ConfigDict(extra="allow")


class Health(BaseModel):
    model_config = _OPEN
    status: Literal["ok"]


class LiveWorker(BaseModel):
    model_config = _OPEN
    name: str
    device: str
    state: str = Field(description="idle or busy")
    job: Optional[str] = Field(None, description="the job it runs, while busy")
    queues: list[str] = Field(default_factory=list)
    pid: Optional[int] = None
    host: Optional[str] = None


class Readiness(BaseModel):
    model_config = _OPEN
    status: Literal["ready", "not ready"]
    redis: str = Field(description="'ok', or why Redis is unreachable")
    devices: list[str] = Field(default_factory=list,
                               description="the devices (queues) the live workers serve")
    workers: list[LiveWorker]
    reason: Optional[str] = Field(None, description="why the service is not ready")


class Histogram(BaseModel):
    model_config = _OPEN
    scale: Literal["log1p"] = Field(description="bins even in log1p(v - lo) / log1p(hi - lo)")
    lo: float
    hi: float
    counts: list[int]


class ImageStats(BaseModel):
    model_config = _OPEN
    pixels: int
    finite: int
    positive: int
    min: Optional[float] = Field(description="of the finite pixels (null: none is finite)")
    max: Optional[float]
    mean: Optional[float]
    sampled_every: int = Field(description="percentiles are of every k-th finite pixel")
    percentiles: dict[str, float] = Field(description="percentile (as text, '99.9') -> value, "
                                                      "of the positive pixels")
    saturation: Optional[float] = Field(None, description="the overload value of an SMV or CBF "
                                                          "image (null: none)")
    overloads: Optional[int] = Field(None, description="pixels at or above the saturation")
    histogram: Optional[Histogram] = None


class ImageInfo(BaseModel):
    model_config = _OPEN
    shape: list[int] = Field(description="(slow, fast) pixels")
    n: int = Field(description="the image shown, as in the file numbering")
    images: int
    first_image: int
    artifact: str = Field(description="the file shown (a single job's artifact name)")
    artifacts: list[str] = Field(description="the image's files the viewer can show")
    name: str = Field(description="the stored name of the file shown")
    sha256: str
    tile: int = Field(description="the tile size the web page asks for")
    max_region_values: int = Field(description="the most values one region answer holds")
    stats: ImageStats


class Profile(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    from_: list[int] = Field(alias="from", description="the first pixel (slow, fast)")
    to: list[int] = Field(description="the last pixel (slow, fast)")
    name: str = Field(description="the file the values are read from")
    pixels: list[list[int]]
    values: list[Optional[float]] = Field(description="null for NaN")
    distance_px: list[float]


class PixelResolution(BaseModel):
    model_config = _OPEN
    pixel: list[int]
    d_A: Optional[float] = Field(description="null where 2θ is 0")
    twotheta_deg: float


class BeamCentre(BaseModel):
    slow: float
    fast: float


class Geometry(BaseModel):
    model_config = _OPEN
    shape: list[int]
    pixel_size_m: float
    pix0_m: list[float]
    fdet: list[float]
    sdet: list[float]
    odet: list[float]
    beam: list[float]
    wavelength_A: float
    distance_m: float
    close_distance_m: float
    twotheta_deg: float
    curved: bool
    convention: str
    beam_center_px: BeamCentre
    pixels: Optional[list[PixelResolution]] = Field(None, description="the pixels asked for "
                                                                      "with pixel=")


class Reflections(BaseModel):
    """The predicted reflections of an image (``GET /v1/jobs/{id}/images/{n}/reflections``)."""

    model_config = _OPEN
    n: int = Field(description="the image")
    columns: list[str] = Field(description="h, k, l, d_A, fast_px, slow_px, excitation_error, F, "
                                           "intensity")
    reflections: list[list[Union[int, float]]] = Field(description="one row per reflection, strongest first")
    total: int = Field(description="rows of the whole table")
    truncated: bool = Field(description="only the first 'limit' rows are here")


__all__ = ["Reflections", "Health", "Readiness", "ImageInfo", "Profile", "Geometry"]
