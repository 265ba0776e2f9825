"""Uploads: stored by content, checked for their declared kind (422 naming the line)."""

from __future__ import annotations

import hashlib

from tests.procs import alive, descendants
from tests.service.conftest import LIMITS, SUMMARY_PROCESS_BYTES
from tests.service.helpers import golden, upload


def test_same_bytes_same_id(alice):
    path = golden("mosflm_matrix") / "A.mat"
    a = upload(alice, path, "matrix")
    b = upload(alice, path, "matrix", name="other.mat")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert a["id"] == b["id"] == f"sha256:{digest}"
    assert a["size"] == path.stat().st_size and a["name"] == "A.mat" and a["kind"] == "matrix"
    r = alice.get(f"/v1/files/{a['id']}")
    assert r.status_code == 200 and r.json()["id"] == a["id"]


def _post(client, name: str, text: bytes, kind: str):
    return client.post("/v1/files", data={"kind": kind}, files={"file": (name, text)})


def test_malformed_hkl_names_the_line(alice):
    r = _post(alice, "bad.hkl", b"1 2 3 100.0\n1 2 3 4.5\n2 2 x 7\n", "hkl")
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["field"] == "file" and err["line"] == 3
    assert "bad.hkl line 3" in err["message"], err
    assert "/tmp" not in err["message"] and "upload-" not in err["message"]


def test_malformed_matrix_names_the_line(alice):
    r = _post(alice, "A.mat", b"0.1 0.2 0.3\n0.4 zero 0.6\n0.7 0.8 0.9\n", "matrix")
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["line"] == 2 and "A.mat line 2" in err["message"]


def test_malformed_sources_names_the_line(alice):
    r = _post(alice, "sources.txt", b"0 0 10 1 1e-10\n0 0 10 abc 1e-10\n", "sources")
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["line"] == 2 and "sources.txt line 2" in err["message"]


def test_a_matrix_is_not_an_hkl_file(alice):
    r = _post(alice, "A.mat", (golden("mosflm_matrix") / "A.mat").read_bytes(), "hkl")
    assert r.status_code == 422 and "line 1" in r.json()["errors"][0]["message"]


def test_bad_kind_and_missing_file(alice):
    r = _post(alice, "x.hkl", b"1 2 3 4\n", "pdb")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "kind"
    r = alice.post("/v1/files", data={"kind": "hkl"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "file"
    r = _post(alice, "empty.hkl", b"", "hkl")
    assert r.status_code == 422


def test_upload_size_limit(alice):
    limit = int(LIMITS["BRAGG_MAX_UPLOAD_BYTES"])
    line = b"1 2 3 100.0\n"
    body = line * (limit // len(line) + 1)
    r = _post(alice, "big.hkl", body, "hkl")
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["limit"] == "max_upload_bytes" and err["allowed"] == limit
    assert err["value"] > limit and "max_upload_bytes" in err["message"]


def test_files_belong_to_their_owner(alice, bob):
    a = upload(alice, golden("mosflm_matrix") / "A.mat", "matrix")
    assert bob.get(f"/v1/files/{a['id']}").status_code == 404
    r = bob.post("/v1/jobs", json={"config": {
        "crystal": {"matrix_file": a["id"]}, "structure_factors": {"default_F": 1},
        "detector": {"fast_pixels": 8, "slow_pixels": 8}}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "config.crystal.matrix_file"


def test_upload_needs_a_token(service):
    import httpx
    r = httpx.post(f"{service.base_url}/v1/files", data={"kind": "hkl"},
                   files={"file": ("x.hkl", b"1 2 3 4\n")})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = httpx.get(f"{service.base_url}/v1/jobs", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


def _pdb(atoms: int, bad_line: int | None = None) -> bytes:
    """A P1 model of ``atoms`` atoms (about 81 bytes each); the atom on ``bad_line`` has a letter
    for its x coordinate."""
    rows = [b"CRYST1   50.000   60.000   70.000  90.00  90.00  90.00 P 1\n"]
    for i in range(atoms):
        x = "   abc  " if i + 2 == bad_line else f"{(i * 0.37) % 50:8.3f}"
        rows.append((f"ATOM  {i % 99999 + 1:5d}  CA  GLY A{i % 9999 + 1:4d}    {x}"
                     f"{(i * 0.11) % 60:8.3f}{(i * 0.07) % 70:8.3f}  1.00 20.00           C  \n"
                     ).encode())
    return b"".join(rows) + b"END\n"


def test_a_large_model_is_summarized_apart_with_the_same_answers(alice):
    """Uploads of BRAGG_UPLOAD_SUMMARY_PROCESS_BYTES or more are summarized in a child process
    (app/work.py): the summary, and the 422 naming the line of a malformed one, are those of a
    small file summarized in the API's thread."""
    big = _pdb(10_000)
    assert SUMMARY_PROCESS_BYTES < len(big) < int(LIMITS["BRAGG_MAX_UPLOAD_BYTES"])
    r = _post(alice, "big.pdb", big, "model")
    assert r.status_code == 201, r.text
    small = _post(alice, "small.pdb", _pdb(20), "model").json()["summary"]
    assert r.json()["summary"] == {**small, "atoms": 10_000}
    r = _post(alice, "bad.pdb", _pdb(10_000, bad_line=7_000), "model")
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["field"] == "file" and err["line"] == 7_000, err
    assert err["message"].startswith("bad.pdb line 7000: x in columns 31-38"), err


def test_an_api_killed_leaves_no_summary_process_behind(service):
    """The summary processes (app/work.py) go with their API: an extra API process summarizes a
    large upload in a child process, is SIGKILLed, and the child exits within seconds."""
    import signal

    import httpx

    from tests.service.conftest import TOKENS, free_port, wait_for

    port = free_port()
    proc = service._spawn(["api", "--port", str(port)], f"api-summaries-{port}.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200, 60, what="the API")
        before = descendants(proc.pid)
        with httpx.Client(base_url=base, timeout=60,
                          headers={"Authorization": f"Bearer {TOKENS['alice']}"}) as c:
            assert _post(c, "big.pdb", _pdb(10_000), "model").status_code == 201
        children = [p for p in descendants(proc.pid) if p not in before]
        assert children, "the large upload was summarized in no child process"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: not any(alive(p) for p in children), 30,
                 what="the summary processes to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
