"""The streamed dataset zip and the series' commands.txt."""

from __future__ import annotations

import hashlib
import io
import subprocess
import threading
import tracemalloc
import zipfile

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from client.api_client import read_sha256_list
from jobs.dataset import SEAL, ChecksumMismatch, DatasetFile, stream_zip
from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.series import series_images
from tests.service.conftest import free_port, wait_for
from jobs.commands import commands_text, series_commands_text

MB = 1 << 20
CHUNK = 128 * 1024


@pytest.fixture()
def dataset(tmp_path):
    """Six files, 8 MiB in all: random (incompressible) and mostly-zero images, one empty."""
    rng = np.random.default_rng(3)
    files = []
    for n in range(1, 6):
        data = rng.integers(0, 256, size=MB + 1000 * n, dtype=np.uint8).tobytes() if n % 2 else \
            np.pad(rng.integers(0, 65535, 5000, dtype=np.uint16), (0, 2 * MB // 2)).tobytes()
        path = tmp_path / f"image_{n:05d}.img"
        path.write_bytes(data)
        files.append((f"images/image_{n:05d}.img", path))
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    files.append(("empty.bin", empty))
    return files


EXTRA = {"run_metadata.json": '{"images": 5}\n', "commands.txt": b"while read -r n; do :; done\n"}


def _check_archive(path, files, extra):
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None  # every member's CRC
        names = zf.namelist()
        assert names == list(extra) + [name for name, _ in files] + [SEAL]
        listed = read_sha256_list_text(zf.read(SEAL).decode())
        assert sorted(listed) == sorted(n for n in names if n != SEAL)
        for name in names[:-1]:
            assert hashlib.sha256(zf.read(name)).hexdigest() == listed[name], name
        for name, src in files:
            assert zf.read(name) == src.read_bytes()
        for name, content in extra.items():
            assert zf.read(name) == (content.encode() if isinstance(content, str) else content)
    return listed


def read_sha256_list_text(text: str) -> dict[str, str]:
    lines = text.splitlines()
    assert lines == sorted(lines, key=lambda line: line.split("  ", 1)[1])
    return {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in lines}


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_zip_streams_with_bounded_memory_and_verifies(dataset, tmp_path, compression):
    total = sum(p.stat().st_size for _, p in dataset)
    assert total > 7 * MB
    out = tmp_path / "dataset.zip"
    tracemalloc.start()
    try:
        chunks = 0
        with open(out, "wb") as fh:
            for chunk in stream_zip(dataset, EXTRA, chunk_size=CHUNK, compression=compression):
                fh.write(chunk)
                chunks += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert chunks > 40
    # a few blocks in flight (the one read, the next, the one handed out) and the deflate state
    # (about 270 KiB, allocated through Python), whatever the size of the dataset
    assert peak < 4 * CHUNK + MB // 2 < total / 7, peak
    listed = _check_archive(out, dataset, EXTRA)
    # the listing is what `sha256sum -c` checks after unzipping
    subprocess.run(["unzip", "-q", str(out), "-d", str(tmp_path / "x")], check=True)
    run = subprocess.run(["sha256sum", "-c", SEAL], cwd=tmp_path / "x", capture_output=True,
                         text=True, check=True)
    assert run.stdout.count(": OK") == len(listed) == len(dataset) + len(EXTRA)
    assert read_sha256_list(tmp_path / "x" / SEAL) == listed


def test_known_digests_are_checked_while_streaming(dataset, tmp_path):
    name, path = dataset[0]
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    files = [DatasetFile(name, path, "sha256:" + good), (*dataset[1], None)]
    out = tmp_path / "ok.zip"
    out.write_bytes(b"".join(stream_zip(files)))
    _check_archive(out, [dataset[0], dataset[1]], {})
    with pytest.raises(ChecksumMismatch, match="image_00001"):
        b"".join(stream_zip([DatasetFile(name, path, "0" * 64)]))


def test_a_dataset_made_at_a_given_time_is_the_same_bytes_whenever_it_is_streamed(dataset):
    """The members made on the fly (``extra``, ``sha256.txt``) are dated ``made_at`` (the route
    passes the job's end), not the time of the download: two downloads of one finished dataset,
    seconds apart, are the same bytes."""
    import time

    made_at = time.time() - 3 * 86400
    first = b"".join(stream_zip(dataset, EXTRA, made_at=made_at))
    with zipfile.ZipFile(io.BytesIO(first)) as z:
        dated = {i.filename: i.date_time for i in z.infolist()}
    expected = time.localtime(made_at)[:6]
    expected = expected[:5] + (expected[5] - expected[5] % 2,)  # zip keeps even seconds
    assert all(dated[name] == expected for name in [*EXTRA, SEAL]), dated
    assert b"".join(stream_zip(dataset, EXTRA, made_at=made_at)) == first


@pytest.mark.parametrize("name", ["", "/abs.img", "../up.img", "a/../b", "a\\b", "sha256.txt",
                                  "run_metadata.json", "./x"])
def test_bad_or_repeated_names_are_refused(dataset, name):
    with pytest.raises(ValueError, match="archive name"):
        b"".join(stream_zip([(name, dataset[0][1])], {"run_metadata.json": "{}"}))


def test_streaming_response_serves_the_zip(dataset, tmp_path):
    """Behind uvicorn the generator is consumed as the client reads (here: in 64 KiB pieces)."""
    api = FastAPI()

    @api.get("/dataset")
    def download():
        return StreamingResponse(stream_zip(dataset, EXTRA), media_type="application/zip")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, what="uvicorn")
        out = tmp_path / "served.zip"
        with httpx.stream("GET", f"http://127.0.0.1:{port}/dataset") as response, \
                open(out, "wb") as fh:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/zip"
            for piece in response.iter_bytes(64 * 1024):
                fh.write(piece)
    finally:
        server.should_exit = True
        thread.join(10)
    _check_archive(out, dataset, EXTRA)


def test_series_commands_text_checks_inputs_then_loops(tmp_path):
    hkl = tmp_path / "p1.hkl"
    hkl.write_text("1 0 0 100\n")
    digest = hashlib.sha256(hkl.read_bytes()).hexdigest()
    config = parse_nanobragg_args(["-cell", "50", "50", "50", "90", "90", "90", "-hkl", "p1.hkl",
                                   "-detpixels", "16", "-phi", "5", "-osc", "1", "-seed", "9",
                                   "-intfile", "image.img"], base_dir=tmp_path).config
    config = config.model_copy(update={"structure_factors": config.structure_factors.model_copy(
        update={"hkl_file": f"sha256:{digest}"})})
    names = {f"sha256:{digest}": "p1.hkl"}
    images = series_images(5.0, 1.0, 2, 1, series_seed=9)
    text = series_commands_text("abc", config, names, "0.1.0", images)
    single = commands_text("abc", config, names, "0.1.0")
    assert f"{digest}  p1.hkl" in text and f"{digest}  p1.hkl" in single
    assert text.startswith("# Reproduces the 2 images of bragg series abc")
    loop = text[text.index("while read"):]
    assert "-hkl p1.hkl" in loop and "-intfile image_\"$n\".img" in loop
    assert loop.endswith(f"00001 5 {images[0].seed}\n00002 6 {images[1].seed}\nEOF\n")
    assert " -phi 5 " not in loop and " -seed 9 " not in loop
    # bash accepts it: the input check passes, the loop runs a stand-in nanobragg per image
    script = 'nanobragg() { echo "$n $phi $seed" >> ran; }\n' + text
    subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "ran").read_text().split("\n")[:2] == [
        f"00001 5 {images[0].seed}", f"00002 6 {images[1].seed}"]
