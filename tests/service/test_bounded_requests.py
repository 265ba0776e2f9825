"""Every request bounded before it allocates, and every download as recorded: an MTZ file whose
header claims gigabytes is a 422 naming it while the API's memory stays put; what the worker would
fail on is refused at submission; an artifact altered on disk is never served. Memory is read from
/proc of the real API process."""

from __future__ import annotations

import re
import socket

import httpx
import numpy as np
import pytest

from tests.service.conftest import Service, wait_for
from tests.service.helpers import SMALL_CONFIG, submit, wait_status
from tests.structures import synthetic_structure, write_model, write_mtz


def proc_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


@pytest.fixture(scope="module")
def own_api(redis_url, tmp_path_factory):
    """An API of its own, so that its peak RSS is this module's alone."""
    svc = Service(tmp_path_factory.mktemp("bounded-api"), redis_url)
    svc.env.update({"BRAGG_NAMESPACE": "bounded"})
    svc.start_api()
    yield svc
    svc.stop_all()


def _post(client, name: str, data: bytes, kind: str):
    return client.post("/v1/files", data={"kind": kind}, files={"file": (name, data)})


def test_an_mtz_header_claiming_gigabytes_is_a_422_and_allocates_nothing(own_api):
    """4 KiB files whose header pointer says 0.5, 1, 2 and 8 GiB: gemmi would have allocated that
    much; now a 422 naming the file, and the API's peak RSS grows by less than 50 MB."""
    with own_api.client("alice") as c:
        assert c.get("/healthz").status_code == 200
        before = proc_kb(own_api.api.pid, "VmHWM")
        for gib in (0.5, 1, 2, 8):
            pointer = min(int(gib * 2**30 / 4) + 1, 2**31 - 1)
            data = (b"MTZ " + np.array([pointer], "<i4").tobytes() + b"\x44\x41\x00\x00")
            r = _post(c, "big.mtz", data.ljust(4096, b"\0"), "mtz")
            assert r.status_code == 422, r.text
            err = r.json()["errors"][0]
            assert err["field"] == "file" and err["message"].startswith(
                f"big.mtz: truncated MTZ file: 4096 bytes, but its header should start at byte "
                f"{4 * (pointer - 1)}")
        assert proc_kb(own_api.api.pid, "VmHWM") - before < 50_000


GEOMETRY = {"crystal": {"Na": 5, "Nb": 5, "Nc": 5},
            "beam": {"wavelength_A": 1.0},
            "detector": {"distance_mm": 60, "fast_pixels": 24, "slow_pixels": 24,
                         "pixel_size_mm": 2},
            "sampling": {"oversample": 1}}


def test_what_the_worker_would_fail_on_is_refused_at_upload_or_submission(alice, tmp_path):
    write_mtz(tmp_path / "i.mtz", "P 21 21 21", (30, 35, 40, 90, 90, 90), 3.0,
              columns=(("IMEAN", "J"), ("SIGIMEAN", "Q")))
    mtz = _post(alice, "i.mtz", (tmp_path / "i.mtz").read_bytes(), "mtz")
    assert mtz.status_code == 201, mtz.text
    r = alice.post("/v1/jobs", json={"config": {**GEOMETRY, "structure_factors": {
        "mtz_file": mtz.json()["id"]}}})
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["field"] == "config.structure_factors.mtz_column"
    assert err["message"].endswith("name its intensity column to use it, converted with "
                                   "F = sqrt(max(I, 0)): mtz_column IMEAN (-mtz_column IMEAN)")
    # named, it runs
    ok = submit(alice, {"config": {**GEOMETRY, "structure_factors": {
        "mtz_file": mtz.json()["id"], "mtz_column": "IMEAN"}}})
    assert wait_status(alice, ok["id"], timeout=120)["status"] == "finished"
    # a model whose CRYST1 says 0.001 A: 422 at upload, naming the file
    write_model(synthetic_structure(4, "P 1", (0.001, 0.001, 0.001, 90, 90, 90)),
                tmp_path / "tiny.pdb")
    r = _post(alice, "tiny.pdb", (tmp_path / "tiny.pdb").read_bytes(), "model")
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["message"].startswith(
        "tiny.pdb: the unit cell 0.001 0.001 0.001 90 90 90 is not a physical one")


def test_an_artifact_altered_on_disk_is_never_served(service, alice):
    job = submit(alice, {"config": SMALL_CONFIG, "outputs": ["float", "smv"]})
    rec = wait_status(alice, job["id"])
    assert rec["status"] == "finished"
    base = f"/v1/jobs/{job['id']}"
    good = alice.get(f"{base}/artifacts/floatimage.bin")
    assert good.status_code == 200
    folder = service.data_dir / "jobs" / job["id"]
    # the same bytes, rewritten (a new mtime): checked again, and served
    (folder / "floatimage.bin").write_bytes(good.content)
    assert alice.get(f"{base}/artifacts/floatimage.bin").content == good.content
    # one byte changed: an error answer for the artifact and for image 1's same file
    altered = bytearray(good.content)
    altered[100] ^= 0xFF
    (folder / "floatimage.bin").write_bytes(bytes(altered))
    for path in (f"{base}/artifacts/floatimage.bin", f"{base}/images/1/artifacts/floatimage.bin"):
        r = alice.get(path)
        assert r.status_code == 500 and "damaged in the store" in r.json()["detail"], r.text
    assert "artifact corrupt, not served: job " + job["id"] in service.log_tail("api.log", 400)


def test_a_large_altered_artifact_ends_its_stream_short(service, alice, tmp_path):
    """A file above the checked-first size streams with its Content-Length and stops before its
    last block when the hash differs: the client sees a broken transfer, never a whole file.
    (A second API on the same deployment, checking only files up to 1 KiB first.)"""
    job = submit(alice, {"config": SMALL_CONFIG, "outputs": ["float"]})
    assert wait_status(alice, job["id"])["status"] == "finished"
    streaming = Service(tmp_path, service.redis_url)
    streaming.env.update({"BRAGG_DATA_DIR": str(service.data_dir),
                          "BRAGG_ARTIFACT_CHECK_FIRST_BYTES": "1024"})
    streaming.start_api()
    try:
        url = f"/v1/jobs/{job['id']}/artifacts/floatimage.bin"
        with streaming.client("alice") as c:
            whole = c.get(url)
            assert whole.status_code == 200 and len(whole.content) == 64 * 64 * 4
            path = service.data_dir / "jobs" / job["id"] / "floatimage.bin"
            altered = bytearray(whole.content)
            altered[-1] ^= 0xFF
            path.write_bytes(bytes(altered))
            got = b""
            with pytest.raises(httpx.HTTPError):
                with c.stream("GET", url) as r:
                    assert r.headers["content-length"] == str(len(altered))
                    for block in r.iter_bytes():
                        got += block
            assert len(got) < len(altered)
    finally:
        streaming.stop_all()


@pytest.fixture(scope="module")
def strict_api(redis_url, tmp_path_factory):
    """An API with short connection deadlines and room for 12 connections."""
    svc = Service(tmp_path_factory.mktemp("strict-api"), redis_url)
    svc.env.update({"BRAGG_NAMESPACE": "strict", "BRAGG_HTTP_HEADER_TIMEOUT_S": "3",
                    "BRAGG_HTTP_BODY_TIMEOUT_S": "1.5", "BRAGG_HTTP_MAX_CONNECTIONS": "12",
                    "BRAGG_HTTP_KEEPALIVE_S": "1"})
    svc.start_api()
    yield svc
    svc.stop_all()


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a generous deadline: it must close)."""
    sock.settimeout(60)
    got = b""
    while True:
        block = sock.recv(4096)
        if not block:
            return got
        got += block


def test_idle_slow_header_and_slow_body_connections_are_closed(strict_api):
    port = strict_api.port
    idle = socket.create_connection(("127.0.0.1", port))
    slow_header = socket.create_connection(("127.0.0.1", port))
    slow_header.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    slow_body = socket.create_connection(("127.0.0.1", port))
    slow_body.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice-token\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    for sock in (idle, slow_header):
        assert _until_closed(sock).startswith(b"HTTP/1.1 408 ")
    assert b" 201 " not in _until_closed(slow_body)
    # after a response, an idle keep-alive connection is closed too
    kept = socket.create_connection(("127.0.0.1", port))
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _until_closed(kept).startswith(b"HTTP/1.1 200 ")
    for sock in (idle, slow_header, slow_body, kept):
        sock.close()


def test_connections_beyond_the_bound_are_closed_as_they_are_accepted(strict_api):
    held = [socket.create_connection(("127.0.0.1", strict_api.port)) for _ in range(12)]
    try:
        extra = socket.create_connection(("127.0.0.1", strict_api.port))
        assert _until_closed(extra) == b""  # closed at once: no answer, no wait
        extra.close()
    finally:
        for sock in held:
            sock.close()
    # once they are gone, the API answers again
    wait_for(lambda: httpx.get(f"{strict_api.base_url}/healthz", timeout=5).status_code == 200,
             60, what="the API after the connections closed")


def test_numbers_of_any_size_in_any_query_are_4xx(alice):
    job = submit(alice, {"config": SMALL_CONFIG, "outputs": ["float"]})
    assert wait_status(alice, job["id"])["status"] == "finished"
    base = f"/v1/jobs/{job['id']}"
    huge = "9" * 5000
    for path, params in ((f"{base}/image", {"n": huge}), (f"{base}/image", {"step": huge}),
                         (f"{base}/image/info", {"n": huge}),
                         (f"{base}/image/profile", {"start": "0,0", "end": "1,1", "n": huge}),
                         (f"{base}/image/profile", {"start": f"{huge},0", "end": "1,1"}),
                         (f"{base}/geometry", {"n": huge}), ("/v1/jobs", {"limit": huge}),
                         (f"{base}/images/{huge}/artifacts/floatimage.bin", {}),
                         (f"{base}/image", {"n": "-1"}), (f"{base}/image", {"step": "1e3"})):
        r = alice.get(path, params=params)
        assert 400 <= r.status_code < 500, (path, params, r.status_code, r.text[:200])


def test_many_image_requests_at_once_all_answer_as_one_does(service, alice):
    """32 region and info requests at once: each answers what it answers alone (the slots only
    make them wait), and /healthz answers meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    job = submit(alice, {"config": SMALL_CONFIG, "outputs": ["float"]})
    assert wait_status(alice, job["id"])["status"] == "finished"
    base = f"/v1/jobs/{job['id']}"
    alone_region = alice.get(f"{base}/image", params={"step": 2}).content
    alone_info = alice.get(f"{base}/image/info").json()

    def ask(i):
        with service.client("alice") as c:
            if i % 2:
                return c.get(f"{base}/image", params={"step": 2}).content == alone_region
            return c.get(f"{base}/image/info").json() == alone_info

    with ThreadPoolExecutor(32) as pool:
        answers = pool.map(ask, range(32))
        assert alice.get("/healthz").status_code == 200
        assert all(answers)


def test_a_structure_factor_table_beyond_the_limit_is_refused_at_submission(alice, tmp_path):
    """A 4-atom model with a 1000 A cell uploads (its summary is small); asked for its structure
    factors to 1 A (dmin_F_A), its P1 table would be 64 GB: the submission is a 422 at the file's
    field, naming the file, the table's size and max_sf_table_bytes, by arithmetic on the summary
    (no worker sees it); in a command line, at the -model flag. Without dmin_F_A the table reaches
    as far as the detector does, which only the worker knows: the submission is accepted."""
    write_model(synthetic_structure(4, "P 1", (1000, 1000, 1000, 90, 90, 90)),
                tmp_path / "huge.pdb")
    up = _post(alice, "huge.pdb", (tmp_path / "huge.pdb").read_bytes(), "model")
    assert up.status_code == 201, up.text
    model = up.json()["id"]
    r = alice.post("/v1/jobs", json={"config": {**GEOMETRY, "structure_factors": {
        "model_file": model, "dmin_F_A": 1.0}}})
    assert r.status_code == 422, r.text
    err = next(e for e in r.json()["errors"] if e.get("limit") == "max_sf_table_bytes")
    assert err["field"] == "config.structure_factors.model_file"
    assert err["allowed"] == 1_600_000_000 and err["value"] > err["allowed"]
    m = re.match(r"huge.pdb: the indices h -1000\.\.1000, k -1000\.\.1000, l -1000\.\.1000 of "
                 r"its P1 table to 1 A \(structure_factors.dmin_F_A\)", err["message"])
    assert m, err
    points = 2001 ** 3
    assert err["value"] == 8 * points
    assert (f"make a structure-factor table of {points:,} points, {8 * points:,} bytes"
            in err["message"]), err
    assert "the limit max_sf_table_bytes is 1,600,000,000 bytes" in err["message"]
    r = alice.post("/v1/jobs", json={"nanobragg_args": [
        "-model", "huge.pdb", "-dmin_F", "1", "-lambda", "1", "-distance", "60", "-detpixels",
        "24", "-pixel", "2", "-N", "5", "-oversample", "1"], "files": {"huge.pdb": model}})
    assert r.status_code == 422, r.text
    err = next(e for e in r.json()["errors"] if e.get("limit") == "max_sf_table_bytes")
    assert err["field"] == "nanobragg_args.0"
    assert err["message"].startswith(m.group(0)), err
    r = alice.post("/v1/jobs", json={"config": {**GEOMETRY, "structure_factors": {
        "model_file": model}}})
    assert r.status_code == 202, r.text
    assert alice.post(f"/v1/jobs/{r.json()['id']}/cancel").status_code in (200, 202)
