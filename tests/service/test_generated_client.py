"""The API's contract: /openapi.json declares a schema for every answer (errors always the API's
ErrorBody), and a client generated from it with ``openapi-python-client`` (offline, at test time;
the package comes with the ``test`` extra) does a user's whole round with nothing else: upload,
submit by config and by command line, poll, trace, download an image, and fetch a series' image
and its dataset. Every byte fetched is checked against the sha256 the job record lists."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import subprocess
import sys
import time
import zipfile

import httpx
import numpy as np
import pytest

from app.schemas import EXAMPLE_FILES

from .conftest import TOKENS
from .helpers import SMALL_CONFIG

#: 3 images of 0.5 deg from phi 10, numbered from 3, on 24 x 20 pixels
SERIES = {
    "crystal": {"cell": {"a_A": 50, "b_A": 60, "c_A": 70}, "Na": 4, "Nb": 4, "Nc": 4},
    "structure_factors": {"default_F": 100},
    "beam": {"wavelength_A": 1.0},
    "detector": {"distance_mm": 80, "fast_pixels": 20, "slow_pixels": 24, "pixel_size_mm": 0.5},
    "scan": {"phi_start_deg": 10.0, "osc_range_deg": 0.5, "phi_steps": 2, "images": 3,
             "first_image": 3},
}
PACKAGE = "bragg_generated"
ERROR_REF = "#/components/schemas/ErrorBody"


@pytest.fixture(scope="module")
def spec(service) -> dict:
    return httpx.get(f"{service.base_url}/openapi.json", timeout=30).json()


@pytest.fixture(scope="module")
def gen(spec, tmp_path_factory):
    """The generated package, imported from a temporary folder."""
    root = tmp_path_factory.mktemp("generated")
    (root / "openapi.json").write_text(json.dumps(spec))
    # no post-processing hooks: formatting the code would need ruff on the PATH
    (root / "config.yaml").write_text("post_hooks: []\n")
    out = subprocess.run([sys.executable, "-m", "openapi_python_client", "generate",
                          "--path", str(root / "openapi.json"), "--meta", "none",
                          "--output-path", str(root / PACKAGE), "--config",
                          str(root / "config.yaml")],
                         capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
    # a response or route the generator could not read is a warning, and left out of the client
    assert "Warning" not in out.stdout + out.stderr, out.stdout + out.stderr
    sys.path.insert(0, str(root))
    try:
        package = importlib.import_module(PACKAGE)
        importlib.import_module(PACKAGE + ".models")  # the records, as package.models
        yield package
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _op(gen, group: str, name: str):
    return importlib.import_module(f"{PACKAGE}.api.{group}.{name}")


def test_every_answer_of_the_document_has_a_schema(spec):
    assert not {"HTTPValidationError", "ValidationError"} & set(spec["components"]["schemas"])
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            codes = op["responses"]
            assert any(c.startswith("2") and codes[c].get("content") for c in codes), where
            for code, resp in codes.items():
                content = resp.get("content") or {}
                if code in ("204", "304"):
                    assert not content, (where, code)
                    continue
                assert content, (where, code)
                for media, body in content.items():
                    assert body.get("schema"), (where, code, media)
                    if code[0] in "45":
                        assert (media, body["schema"]) == ("application/json",
                                                           {"$ref": ERROR_REF}), (where, code)
                    elif not media.endswith("json") and not media.startswith("text/"):
                        assert body["schema"] == {"type": "string", "format": "binary"}, \
                            (where, media)
            if path.startswith("/v1/"):
                assert {"401", "503"} <= set(codes), where
    dataset = spec["paths"]["/v1/jobs/{job_id}/dataset"]["get"]["responses"]["200"]["content"]
    assert set(dataset) == {"application/zip", "application/octet-stream"}


def _poll(gen, client, job_id: str, timeout: float = 120):
    get_job = _op(gen, "jobs", "get_job")
    deadline = time.monotonic() + timeout
    while True:
        rec = get_job.sync(job_id, client=client)
        assert isinstance(rec, gen.models.JobRecord), rec
        if rec.status.value in ("finished", "failed", "canceled"):
            return rec
        assert time.monotonic() < deadline, f"job {job_id} still {rec.status.value}"
        time.sleep(0.2)


def gen_types_file():
    return importlib.import_module(f"{PACKAGE}.types").File


def _bytes(result) -> bytes:
    """The bytes of a download the generated client typed as a file."""
    assert isinstance(result, gen_types_file()), result
    return result.payload.read()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _listed(rec, name: str) -> str:
    return next(a.sha256 for a in rec.artifacts if a.name == name)


@pytest.fixture()
def client(gen, service):
    with gen.AuthenticatedClient(base_url=service.base_url, token=TOKENS["alice"],
                                 raise_on_unexpected_status=True, timeout=httpx.Timeout(60)) as c:
        yield c


def test_a_generated_client_submits_polls_traces_and_downloads(gen, client):
    models = gen.models
    File = gen_types_file()
    submit = _op(gen, "jobs", "submit_job")

    # by config, with a pixel traced at submission
    r = submit.sync_detailed(client=client, body=models.JobSubmission.from_dict(
        {"config": SMALL_CONFIG, "trace_pixels": [[1, 2]], "outputs": ["float", "smv"]}))
    assert r.status_code == 202 and r.headers["location"] == f"/v1/jobs/{r.parsed.id}"
    by_config = _poll(gen, client, r.parsed.id)
    assert by_config.status.value == "finished", by_config.error

    # by command line, with uploaded input files
    upload = _op(gen, "files", "upload_file")
    ids = {}
    for name, kind in (("A.mat", "matrix"), ("P1.hkl", "hkl")):
        body = models.UploadFileBody(file=File(payload=io.BytesIO((EXAMPLE_FILES / name)
                                                                  .read_bytes()), file_name=name),
                                     kind=models.UploadFileBodyKind(kind))
        rec = upload.sync(client=client, body=body)
        assert isinstance(rec, models.FileRecord), rec
        assert rec.id == "sha256:" + _sha((EXAMPLE_FILES / name).read_bytes())
        ids[name] = rec.id
    args = ["-mat", "A.mat", "-hkl", "P1.hkl", "-lambda", "1.0", "-N", "3", "-distance", "100",
            "-detpixels", "32", "-pixel", "0.2"]
    queued = submit.sync(client=client, body=models.JobSubmission.from_dict(
        {"nanobragg_args": args, "files": ids, "outputs": ["float", "png"]}))
    by_args = _poll(gen, client, queued.id)
    assert by_args.status.value == "finished", by_args.error
    assert by_args.shape == [32, 32]

    # the image: the whole file, and the viewer's region of it at step 1, are the same floats
    get_artifact = _op(gen, "artifacts", "get_artifact")
    floats = _bytes(get_artifact.sync(by_config.id, "floatimage.bin", client=client))
    assert _sha(floats) == _listed(by_config, "floatimage.bin")
    png = _bytes(get_artifact.sync(by_args.id, "preview.png", client=client))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and _sha(png) == _listed(by_args, "preview.png")
    region = _bytes(_op(gen, "images", "get_image_region").sync(by_config.id, client=client))
    assert region == floats
    info = _op(gen, "images", "get_image_info").sync(by_config.id, client=client)
    assert isinstance(info, models.ImageInfo) and info.shape == [64, 64]
    assert info.stats.to_dict()["max"] == pytest.approx(float(np.frombuffer(floats, "<f4").max()))

    # traces: the one of the submission, one more traced on request, and a typed 404 meanwhile
    get_trace = _op(gen, "traces", "get_trace")
    text = get_trace.sync(by_config.id, client=client, pixel="1,2")
    assert isinstance(text, str) and _sha(text.encode()) == _listed(by_config,
                                                                   "trace_1_2.log")
    missing = get_trace.sync(by_config.id, client=client, pixel="3,4")
    assert isinstance(missing, models.ErrorBody) and "traces" in missing.hint
    posted = _op(gen, "traces", "post_traces").sync_detailed(
        by_config.id, client=client, body=models.TraceRequest.from_dict({"pixels": [[3, 4]]}))
    assert posted.status_code == 202 and isinstance(posted.parsed, models.TraceSubmission)
    tracer = _poll(gen, client, posted.parsed.trace_job.id)
    assert tracer.status.value == "finished", tracer.error
    text = get_trace.sync(by_config.id, client=client, pixel="3,4")
    assert _sha(text.encode()) == _listed(tracer, "trace_3_4.log")

    # errors come back typed: every field at fault, by its path
    bad = submit.sync_detailed(client=client, body=models.JobSubmission.from_dict(
        {"config": dict(SMALL_CONFIG, detector={"distance_mm": -1, "fast_pixels": 0,
                                                "slow_pixels": 64})}))
    assert bad.status_code == 422 and isinstance(bad.parsed, models.ErrorBody)
    assert {e.field for e in bad.parsed.errors} >= {"config.detector.fast_pixels"}


def test_a_generated_client_fetches_a_series_image_and_its_dataset(gen, client, service):
    models = gen.models
    queued = _op(gen, "jobs", "submit_job").sync(client=client, body=models.JobSubmission.from_dict(
        {"config": SERIES, "outputs": ["float", "smv"], "label": "generated client"}))
    assert queued.kind.value == "series" and queued.series.images == 3
    done = _poll(gen, client, queued.id)
    assert done.status.value == "finished", done.error
    children = _op(gen, "jobs", "list_jobs").sync(client=client, parent=done.id).jobs
    fourth = next(c for c in children if 4 in c.image_numbers)

    image = _bytes(_op(gen, "artifacts", "get_image_artifact").sync(done.id, 4, "floatimage.bin",
                                                                   client=client))
    assert len(image) == 24 * 20 * 4
    assert _sha(image) == _listed(fourth, "floatimage_00004.bin")

    archive = _bytes(_op(gen, "artifacts", "get_dataset").sync(done.id, client=client))
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        members = {name: z.read(name) for name in z.namelist()}
    assert members["floatimage_00004.bin"] == image
    listed = dict(reversed(line.split("  ", 1)) for line in
                  members.pop("sha256.txt").decode().splitlines())
    assert listed == {name: _sha(data) for name, data in members.items()}
    assert {f"floatimage_{n:05d}.bin" for n in (3, 4, 5)} <= set(members)
    # the dataset's two declared types: zip by default, bytes to a request that accepts only those
    with service.client("alice") as plain:
        for accept, served in ((None, "application/zip"),
                               ("application/octet-stream", "application/octet-stream")):
            r = plain.get(f"/v1/jobs/{done.id}/dataset",
                          headers={"Accept": accept} if accept else {})
            assert r.headers["content-type"] == served and r.content == archive
