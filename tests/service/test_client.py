"""The ``bragg`` client commands and the Python client against the real service: ids on standard
output, uploads of the files a command line names, live progress, fetch with sha256 checks, traces,
cancel, listing, and the errors people see; series (``--images N``) submitted, waited for image by
image, fetched as one verified dataset, listed by child; and the verifying unpacker refusing
damaged zips."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from client import subcommands as client_cli
from client.api_client import (ApiError, BraggClient, ChecksumError, ClientError, extract_verified,
                        verify_dir, with_series_args, with_series_config)
from tests.golden import load_case, meets_bar
from tests.service.conftest import ROOT, TOKENS
from tests.service.helpers import LONG_ARGS, wait_status

#: LONG_ARGS on 256 x 256 pixels: 52 M evaluations, a few seconds on a CPU worker
BIG_ARGS = [("256" if a == "128" else a) for a in LONG_ARGS]
CUBIC_ARGS = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-lambda",
              "6.2", "-N", "5", "-distance", "100", "-detpixels", "256"]
#: a tiny rotation: 16 x 16 pixels, image 1 from phi 2 over 1 deg in 2 steps (4 images with
#: --images 4)
SERIES_ARGS = ["-cell", "50", "60", "70", "90", "90", "90", "-default_F", "100", "-lambda", "1",
               "-N", "4", "-distance", "80", "-detpixels", "16", "-pixel", "0.5", "-phi", "2",
               "-osc", "1", "-phisteps", "2", "-seed", "99"]


def bragg(service, *args, owner: str | None = "alice", env: dict | None = None, cwd=None,
          timeout: float = 180) -> subprocess.CompletedProcess:
    """``bragg ARGS`` as a person runs it, with BRAGG_URL/BRAGG_TOKEN in the environment."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("BRAGG_")}
    e.update({"BRAGG_URL": service.base_url, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    if owner:
        e["BRAGG_TOKEN"] = TOKENS[owner]
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "bragg.main", *args], capture_output=True,
                          text=True, env=e, cwd=cwd or ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def cubic_job(service, tmp_path_factory):
    """The acceptance path: submit -- ARGS, wait, fetch."""
    out = tmp_path_factory.mktemp("cubic")
    sub = bragg(service, "submit", "--", *CUBIC_ARGS)
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip()
    waited = bragg(service, "wait", job_id)
    fetched = bragg(service, "fetch", job_id, "--dir", str(out / "files"))
    return sub, waited, fetched, job_id, out / "files"


def test_submit_prints_the_id_alone(cubic_job):
    sub, _, _, job_id, _ = cubic_job
    assert sub.stdout == job_id + "\n" and len(job_id) == 32 and job_id.isalnum()
    assert f"submitted job {job_id}" in sub.stderr and "65,536 evaluations" in sub.stderr


def test_wait_then_fetch_meets_the_golden_bar(cubic_job):
    _, waited, fetched, job_id, folder = cubic_job
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout == "finished\n" and "100%" in waited.stderr
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == str(folder) and "sha256.txt verified" in fetched.stderr
    assert {p.name for p in folder.iterdir()} == {"floatimage.bin", "intimage.img", "preview.png",
                                                   "run_metadata.json", "commands.txt",
                                                   "sha256.txt"}
    case = load_case("cubic_default_F")
    image = np.fromfile(folder / "floatimage.bin", dtype="<f4").reshape(case.shape)
    ok, m = meets_bar(image, case.reference())
    assert ok, m
    out = subprocess.run(["sha256sum", "-c", "sha256.txt"], cwd=folder, capture_output=True)
    assert out.returncode == 0


def test_fetch_detects_a_changed_file(cubic_job, tmp_path):
    *_, folder = cubic_job
    for p in folder.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    assert "floatimage.bin" in verify_dir(tmp_path)
    data = bytearray((tmp_path / "floatimage.bin").read_bytes())
    data[1000] ^= 1
    (tmp_path / "floatimage.bin").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="floatimage.bin"):
        verify_dir(tmp_path)
    (tmp_path / "preview.png").unlink()
    with pytest.raises(ChecksumError):
        verify_dir(tmp_path)


def test_status_jobs_and_trace(cubic_job, service):
    job_id = cubic_job[3]
    st = bragg(service, "status", job_id, "--json")
    assert st.returncode == 0 and json.loads(st.stdout)["status"] == "finished"
    human = bragg(service, "status", job_id)
    assert human.stdout.startswith(f"job {job_id}, finished") and "floatimage.bin" in human.stdout
    listed = bragg(service, "jobs", "--json", "--limit", "200")
    assert job_id in {j["id"] for j in json.loads(listed.stdout)}
    table = bragg(service, "jobs", "--status", "finished")
    assert job_id in table.stdout
    # bob sees none of alice's jobs
    assert job_id not in bragg(service, "jobs", "--json", "--limit", "200", owner="bob").stdout
    # a pixel not traced at submission: traced now by a trace job, then printed
    tr = bragg(service, "trace", job_id, "30", "40")
    assert tr.returncode == 0, tr.stderr
    assert tr.stdout.startswith("TRACE_PY_CONFIG: tracing pixel (spixel=30, fpixel=40)")
    again = bragg(service, "trace", job_id, "30", "40")
    assert again.stdout == tr.stdout and "trace job" not in again.stderr


def test_submit_uploads_the_files_a_command_line_names(service, tmp_path):
    """Files in a sub-folder, named by relative paths: uploaded and renamed to bare names."""
    case = load_case("mosflm_matrix")
    (tmp_path / "in").mkdir()
    for name in ("A.mat", "p1.hkl"):
        (tmp_path / "in" / name).write_bytes((case.folder / name).read_bytes())
    args = ["-mat", "in/A.mat", "-hkl", "in/p1.hkl", "-lambda", "1.0", "-N", "6", "-distance",
            "100", "-detpixels", "256", "-pixel", "0.2"]
    sub = bragg(service, "submit", "--trace", "128", "129", "--label", "mosflm", "--", *args,
                cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip()
    with BraggClient(service.base_url, TOKENS["alice"]) as bc:
        rec = bc.wait(job_id, timeout=180)
        assert rec["status"] == "finished" and rec["label"] == "mosflm"
        assert rec["trace_pixels"] == [[128, 129]]
        paths = bc.fetch(job_id, tmp_path / "out")
    image = np.fromfile(tmp_path / "out" / "floatimage.bin", dtype="<f4").reshape(case.shape)
    assert meets_bar(image, case.reference())[0]
    assert "trace_128_129.log" in {p.name for p in paths}
    # commands.txt names the files as the command line did, without the folder
    assert "-mat A.mat" in (tmp_path / "out" / "commands.txt").read_text()


def test_submit_config_file_uploads_its_local_files(service, tmp_path):
    case = load_case("mosflm_matrix")
    for name in ("A.mat", "p1.hkl"):
        (tmp_path / name).write_bytes((case.folder / name).read_bytes())
    (tmp_path / "job.json").write_text(json.dumps({
        "config": {"crystal": {"matrix_file": "A.mat", "Na": 6, "Nb": 6, "Nc": 6},
                   "structure_factors": {"hkl_file": "p1.hkl"}, "beam": {"wavelength_A": 1.0},
                   "detector": {"distance_mm": 100, "pixel_size_mm": 0.2, "fast_pixels": 256,
                                "slow_pixels": 256}},
        "outputs": ["float"], "label": "from a file"}))
    sub = bragg(service, "submit", "--config", str(tmp_path / "job.json"), "--dtype", "float64")
    assert sub.returncode == 0, sub.stderr
    with BraggClient(service.base_url, TOKENS["alice"]) as bc:
        rec = bc.wait(sub.stdout.strip(), timeout=180)
    assert rec["status"] == "finished" and rec["label"] == "from a file"
    assert {a["name"] for a in rec["artifacts"]} == {"floatimage.bin", "run_metadata.json",
                                                      "commands.txt", "sha256.txt"}


def test_python_client_follows_progress_and_cancel(service):
    with BraggClient(service.base_url, TOKENS["alice"]) as bc:
        rec = bc.submit_args(BIG_ARGS, label="long")
        seen = []
        done = bc.wait(rec["id"], timeout=180, on_update=lambda r: seen.append(
            (r["status"], r["progress"])))
        assert done["status"] == "finished" and done["evaluations"] == 4 * 128 * 128 * 800
        progress = [p for s, p in seen if s == "running"]
        assert progress and progress == sorted(progress), seen
        assert seen[-1] == ("finished", 1.0) and seen[0][0] in ("queued", "running")
        # progress is written every BRAGG_PROGRESS_INTERVAL_S (0.5 s): a job of a few seconds
        # shows several values on the way
        from datetime import datetime
        took = (datetime.fromisoformat(done["finished_at"].rstrip("Z"))
                - datetime.fromisoformat(done["started_at"].rstrip("Z"))).total_seconds()
        if took > 2.5:
            assert len(set(progress)) >= 2, (took, seen)
        # cancel from the command line, then wait says so with status 1
        job = bc.submit_args(BIG_ARGS, label="to cancel")
    with service.client("alice") as alice:
        wait_status(alice, job["id"], ("running", "finished"), timeout=60)
    c = bragg(service, "cancel", job["id"])
    assert c.returncode == 0 and c.stdout.strip() in ("canceled", "running"), c.stderr
    w = bragg(service, "wait", job["id"], "--quiet")
    assert w.returncode == 1 and w.stdout == "canceled\n", (w.stdout, w.stderr)


def test_errors_people_see(service, tmp_path):
    # no token on a deployment with tokens
    r = bragg(service, "jobs", owner=None)
    assert r.returncode == 2 and "401: missing bearer token" in r.stderr and r.stdout == ""
    # a flag's value checked by the API: 422 with the field
    r = bragg(service, "submit", "--", "-cell", "100", "100", "100", "90", "90", "90",
              "-detpixels", "-3")
    assert r.returncode == 2 and r.stdout == "" and "422" in r.stderr, r.stderr
    # a file the command line names but that is not there
    r = bragg(service, "submit", "--", "-hkl", "missing.hkl", "-N", "5", cwd=tmp_path)
    assert r.returncode == 2 and "-hkl names missing.hkl" in r.stderr and r.stdout == ""
    # neither form
    r = bragg(service, "submit")
    assert r.returncode == 2 and "--config FILE" in r.stderr
    # a service that is not there
    r = bragg(service, "status", "x" * 32, env={"BRAGG_URL": "http://127.0.0.1:9"})
    assert r.returncode == 3 and "cannot reach" in r.stderr
    # flags win over the environment
    r = bragg(service, "jobs", "--token", "nope")
    assert r.returncode == 2 and "invalid bearer token" in r.stderr
    with BraggClient(service.base_url, TOKENS["alice"]) as bc:
        with pytest.raises(ApiError) as err:
            bc.get("0" * 32)
        assert err.value.status_code == 404
        with pytest.raises(ClientError, match="not finished|is queued|is running"):
            bc.fetch(bc.submit_args(LONG_ARGS)["id"], tmp_path / "x")
        for j in bc.jobs(limit=50):
            if j["status"] in ("queued", "running"):
                bc.cancel(j["id"])
    assert not Path(tmp_path / "x").exists()


def test_first_hour_errors_are_in_the_commands_terms(service, cubic_job):
    job_id = cubic_job[3]
    unknown = "0123456789abcdef" * 2
    for command in ("wait", "fetch", "status", "trace"):
        extra = ("1", "2") if command == "trace" else ()
        r = bragg(service, command, unknown, *extra)
        # the id is named, and nothing was drawn before (no progress bar, no trace job)
        assert r.returncode == 2 and r.stderr == (f"bragg {command}: error 404: job {unknown} "
                                                  "not found\n"), (command, r.stderr)
    # pixels in S and F, as the command takes them (not the API's ?pixel=s,f)
    r = bragg(service, "trace", job_id, "-1", "5")
    assert r.returncode == 2 and "argument S: expected an integer >= 0, got -1" in r.stderr
    r = bragg(service, "trace", job_id, "5", "256")
    assert r.returncode == 2 and r.stderr == (f"bragg trace: error: pixel S=5 F=256 is outside "
                                              f"the detector of job {job_id}: S is 0..255, F is "
                                              "0..255\n"), r.stderr
    assert "pixel=" not in r.stderr
    # a missing or wrong token: the command's option and variable
    r = bragg(service, "status", job_id, owner=None)
    assert r.returncode == 2 and "hint: give the token with --token TOKEN or BRAGG_TOKEN=TOKEN" \
        in r.stderr and "Authorization" not in r.stderr, r.stderr
    r = bragg(service, "status", job_id, "--token", "nope")
    assert "(--token or BRAGG_TOKEN) is not one of this service's" in r.stderr, r.stderr
    # the API says both: the header, and the command's options
    r = httpx.get(f"{service.base_url}/v1/jobs/{job_id}")
    assert r.status_code == 401 and "--token" in r.json()["hint"] \
        and "Authorization: Bearer" in r.json()["hint"]


# -- series -------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listed(folder: Path) -> dict[str, str]:
    """sha256.txt of a folder read by the test itself: name -> hex."""
    out = {}
    for line in (folder / "sha256.txt").read_text().splitlines():
        digest, name = line.split("  ", 1)
        out[name] = digest
    return out


@pytest.fixture(scope="module")
def series_job(service, tmp_path_factory):
    """A series from the command line: submit --images 4 -- ARGS, wait, fetch."""
    out = tmp_path_factory.mktemp("series")
    sub = bragg(service, "submit", "--images", "4", "--outputs", "float", "--", *SERIES_ARGS)
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip()
    waited = bragg(service, "wait", job_id)
    fetched = bragg(service, "fetch", job_id, "--dir", str(out / "dataset"))
    return sub, waited, fetched, job_id, out / "dataset"


def test_submit_images_makes_a_series(series_job, service):
    sub, waited, _, job_id, _ = series_job
    assert sub.stdout == job_id + "\n", sub.stdout
    assert f"submitted series {job_id}, queued, 4 images" in sub.stderr, sub.stderr
    with BraggClient(service.base_url, TOKENS["alice"]) as bc:
        rec = bc.get(job_id)
    assert rec["kind"] == "series" and rec["series"]["images"] == 4
    assert rec["series"]["first_image"] == 1 and rec["outputs"] == ["float"]
    # the progress bar counted images, and wait ended like a job's
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout == "finished\n" and "images 4/4" in waited.stderr, waited.stderr
    assert f"series {job_id}, finished, 4 images" in waited.stderr
    assert "downloads its dataset (4 images, verified)" in waited.stderr


def test_fetch_of_a_series_is_its_verified_dataset(series_job, service):
    _, _, fetched, job_id, folder = series_job
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout == f"{folder}\n"
    names = {p.name for p in folder.iterdir()}
    floats = {f"floatimage_{n:05d}.bin" for n in range(1, 5)}
    assert names == floats | {"run_metadata.json", "commands.txt", "sha256.txt"}, names
    total = sum((folder / n).stat().st_size for n in names)
    assert f"7 files, {total:,} bytes; sha256.txt verified" in fetched.stderr, fetched.stderr
    assert "4 x floatimage_#####.bin" in fetched.stderr
    # sha256.txt lists every other file, and each file has the listed sha256
    listed = _listed(folder)
    assert set(listed) == names - {"sha256.txt"}
    for name, digest in listed.items():
        assert _sha256(folder / name) == digest, name
    assert subprocess.run(["sha256sum", "-c", "sha256.txt"], cwd=folder,
                          capture_output=True).returncode == 0
    # nothing of the download is left beside the folder
    assert [p.name for p in folder.parent.iterdir()] == ["dataset"]
    md = json.loads((folder / "run_metadata.json").read_text())
    assert md["job_id"] == job_id and md["kind"] == "series"
    assert md["series"]["images"] == 4
    # each fetched image is the one the per-image route serves (16 x 16 float32)
    with BraggClient(service.base_url, TOKENS["alice"]) as bc, service.client("alice") as alice:
        for n in range(1, 5):
            mine = (folder / f"floatimage_{n:05d}.bin").read_bytes()
            r = alice.get(f"/v1/jobs/{job_id}/images/{n}/artifacts/floatimage.bin")
            assert r.status_code == 200, r.text
            assert len(mine) == 16 * 16 * 4 and mine == r.content, n
            one = bc.download_image(job_id, n, "floatimage.bin", folder.parent / f"one_{n}.bin")
            assert one.read_bytes() == mine
            one.unlink()
        image = np.frombuffer(mine, dtype="<f4")
        assert np.isfinite(image).all() and image.max() > 0


def test_fetch_of_a_series_wants_a_new_folder(series_job, service, tmp_path):
    job_id = series_job[3]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    r = bragg(service, "fetch", job_id, "--dir", str(tmp_path / "full"))
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert "exists and is not an empty folder" in r.stderr
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]
    # an empty folder is taken
    (tmp_path / "empty").mkdir()
    r = bragg(service, "fetch", job_id, "--dir", str(tmp_path / "empty"))
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "empty").iterdir())) == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "full"]


def test_status_and_children_of_a_series(series_job, service):
    job_id = series_job[3]
    st = bragg(service, "status", job_id)
    assert st.returncode == 0, st.stderr
    assert st.stdout.startswith(f"series {job_id}, finished, 4 images, 16x16 pixels"), st.stdout
    assert "images: 4 (1-4); 4 done, 0 failed, 0 canceled" in st.stdout
    assert f"`bragg jobs --parent {job_id}`" in st.stdout
    listed = bragg(service, "jobs", "--parent", job_id, "--json")
    assert listed.returncode == 0, listed.stderr
    children = json.loads(listed.stdout)
    assert children and all(c["parent"] == job_id and c["status"] == "finished"
                            for c in children)
    numbers = [n for c in children for n in c["image_numbers"]]
    assert numbers == [1, 2, 3, 4]  # in image order
    table = bragg(service, "jobs", "--parent", job_id)
    assert all(c["id"] in table.stdout for c in children), table.stdout
    child = bragg(service, "status", children[-1]["id"])
    assert f"of series {job_id}" in child.stdout, child.stdout
    # a series traces one image at a time: an untraced pixel of image 2, traced now
    tr = bragg(service, "trace", job_id, "3", "4", "--image", "2")
    assert tr.returncode == 0, tr.stderr
    assert tr.stdout.startswith("TRACE_PY_CONFIG: tracing pixel (spixel=3, fpixel=4)"), tr.stdout
    with service.client("alice") as alice:
        served = alice.get(f"/v1/jobs/{job_id}/images/2/trace", params={"pixel": "3,4"})
    assert served.status_code == 200 and served.text == tr.stdout
    whole = bragg(service, "trace", job_id, "3", "4")
    assert whole.returncode == 2 and "give --image N (N = 1..4)" in whole.stderr, whole.stderr
    # the owner's list shows the series with its images, not its children
    mine = bragg(service, "jobs", "--limit", "200")
    assert job_id in mine.stdout and "4/4" in mine.stdout
    assert not any(c["id"] in mine.stdout for c in children)


def test_a_series_from_a_config_file(service, tmp_path):
    cfg = {"crystal": {"cell": {"a_A": 50, "b_A": 60, "c_A": 70}, "Na": 4, "Nb": 4, "Nc": 4},
           "structure_factors": {"default_F": 100}, "beam": {"wavelength_A": 1.0},
           "detector": {"distance_mm": 80, "fast_pixels": 16, "slow_pixels": 16,
                        "pixel_size_mm": 0.5},
           "scan": {"phi_start_deg": 0.0, "osc_range_deg": 0.5, "phi_steps": 2}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    sub = bragg(service, "submit", "--config", str(tmp_path / "cfg.json"), "--images", "2",
                "--first-image", "3", "--outputs", "float", "smv")
    assert sub.returncode == 0, sub.stderr
    assert "2 images (3-4)" in sub.stderr, sub.stderr
    with BraggClient(service.base_url, TOKENS["alice"]) as bc:
        rec = bc.wait(sub.stdout.strip(), timeout=120)
        assert rec["status"] == "finished", rec
        assert (rec["series"]["images"], rec["series"]["first_image"]) == (2, 3)
        paths = bc.fetch_dataset(rec["id"], tmp_path / "out")
    names = [p.name for p in paths]
    assert names[-1] == "sha256.txt"
    assert set(names) == {"floatimage_00003.bin", "floatimage_00004.bin", "intimage_00003.img",
                          "intimage_00004.img", "run_metadata.json", "commands.txt",
                          "sha256.txt"}
    assert verify_dir(tmp_path / "out").keys() == set(names) - {"sha256.txt"}


def test_series_options_set_the_flag_or_the_field():
    args = ["-N", "4", "-images", "9", "-phi", "2"]
    assert with_series_args(args, 4) == ["-N", "4", "-images", "4", "-phi", "2"]
    assert with_series_args(["-N", "4"], 3, 0) == ["-N", "4", "-images", "3", "-first_image", "0"]
    assert with_series_args(args, None) == args
    cfg = with_series_config({"scan": {"osc_range_deg": 1}}, 5, 2)
    assert cfg["scan"] == {"osc_range_deg": 1, "images": 5, "first_image": 2}
    assert with_series_config({}, 6) == {"scan": {"images": 6}}
    with pytest.raises(ClientError, match="config.scan is list"):
        with_series_config({"scan": []}, 2)


def test_a_damaged_dataset_leaves_no_folder(service, tmp_path):
    """The dataset route stops the stream when a stored file no longer matches its record; the
    client reports the broken download and leaves neither the folder nor its temporary one."""
    args = [("16" if a == "256" else a) for a in CUBIC_ARGS]
    with BraggClient(service.base_url, TOKENS["alice"]) as bc:
        rec = bc.wait(bc.submit_args(args, outputs=["float"])["id"], timeout=120)
        assert rec["status"] == "finished", rec
        good = bc.fetch_dataset(rec["id"], tmp_path / "good")
        assert sorted(p.name for p in good) == ["commands.txt", "floatimage.bin",
                                                "run_metadata.json", "sha256.txt"]
        stored = service.data_dir / "jobs" / rec["id"] / "floatimage.bin"
        data = bytearray(stored.read_bytes())
        assert data == (tmp_path / "good" / "floatimage.bin").read_bytes()
        data[100] ^= 0xFF
        os.chmod(stored, 0o644)
        stored.write_bytes(bytes(data))
        with pytest.raises(ClientError, match=f"dataset of {rec['id']} broke: .*"
                                              f"{tmp_path / 'bad'} was not written"):
            bc.fetch_dataset(rec["id"], tmp_path / "bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]


# -- the verifying unpacker, over hand-made zips -------------------------------------------------
def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a name written twice, on purpose
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _seal(members: dict[str, bytes]) -> bytes:
    return "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n"
                   for n, d in sorted(members.items())).encode()


FILES = {"floatimage_00001.bin": b"\x01" * 64, "floatimage_00002.bin": b"\x02" * 64,
         "run_metadata.json": b"{}\n"}


def test_extract_verified_unpacks_a_good_zip(tmp_path):
    z = tmp_path / "d.zip"
    z.write_bytes(_zip([*FILES.items(), ("sha256.txt", _seal(FILES))]))
    names = extract_verified(z, tmp_path / "out")
    assert names == [*FILES, "sha256.txt"]
    for name, data in FILES.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    assert (tmp_path / "out" / "sha256.txt").read_bytes() == _seal(FILES)
    assert verify_dir(tmp_path / "out").keys() == FILES.keys()


@pytest.mark.parametrize("case, message", [
    ("wrong digest", "floatimage_00002.bin: sha256 .* differs from sha256.txt's"),
    ("unlisted", "not listed: run_metadata.json"),
    ("listed, absent", "listed but not in the zip: floatimage_00009.bin"),
    ("seal not last", "the last member is 'run_metadata.json', not sha256.txt"),
    ("no seal", "not sha256.txt"),
    ("bad line", "sha256.txt line 1 is not"),
    ("outside", "would unpack outside the folder"),
    ("twice", "members named twice: floatimage_00001.bin"),
    ("truncated", "not a complete zip"),
])
def test_extract_verified_refuses_a_damaged_zip(tmp_path, case, message):
    files = dict(FILES)
    seal = _seal(files)
    members = [*files.items(), ("sha256.txt", seal)]
    if case == "wrong digest":
        members[1] = ("floatimage_00002.bin", b"\x03" * 64)
    elif case == "unlisted":
        seal = _seal({k: v for k, v in files.items() if k != "run_metadata.json"})
        members[-1] = ("sha256.txt", seal)
    elif case == "listed, absent":
        members[-1] = ("sha256.txt", _seal(files | {"floatimage_00009.bin": b""}))
    elif case == "seal not last":
        members = [members[0], members[1], members[3], members[2]]
    elif case == "no seal":
        members = members[:-1]
    elif case == "bad line":
        members[-1] = ("sha256.txt", b"not a checksum line\n" + seal)
    elif case == "twice":
        members.insert(0, ("floatimage_00001.bin", b"\x09" * 64))
    elif case == "outside":
        members.insert(0, ("../escaped.bin", b"x"))
        members[-1] = ("sha256.txt", _seal(files | {"../escaped.bin": b"x"}))
    data = _zip(members)
    if case == "truncated":
        data = data[: len(data) - 40]
    z = tmp_path / "d.zip"
    z.write_bytes(data)
    with pytest.raises(ChecksumError, match=message):
        extract_verified(z, tmp_path / "out")
    assert not (tmp_path / "escaped.bin").exists()


def test_wait_names_the_failed_images(capsys):
    rec = {"id": "s" * 32, "status": "failed", "artifacts": [],
           "error": {"type": "ImagesFailed", "message": "3 of 6 images failed; image 2, 3: "
                                                        "RenderError: out of memory"},
           "series": {"images": 6, "first_image": 1, "images_done": 3, "images_failed": 3,
                      "images_canceled": 0, "children": 3, "children_ended": 3,
                      "failures": [{"images": [2, 3], "error": {"type": "RenderError",
                                                               "message": "out of memory"}},
                                   {"images": [6], "error": {"type": "Timeout",
                                                             "message": "ran past 60 s"}}]}}
    assert client_cli._ended(rec) == 1
    out = capsys.readouterr()
    assert out.out == "failed\n"
    assert f"series {'s' * 32} failed" in out.err
    assert "3 of 6 images done, 3 failed, 0 canceled" in out.err
    assert "images 2-3: RenderError: out of memory" in out.err
    assert "image 6: Timeout: ran past 60 s" in out.err
    assert out.err.count("out of memory") == 1  # the series' error names the first failure
