"""Status-poll requests per second: 32 concurrent clients GET one job record for a while.

    python -m bench.service_poll [--clients 32] [--seconds 10] [--api-workers 1]

Each client is an asyncio task holding one keep-alive HTTP/1.1 connection and sending one request
at a time (a minimal client on raw sockets, so that the load generator costs little CPU; --httpx
uses httpx.AsyncClient instead). The clients are spread over --client-procs processes. They run on
the same machine as the API and take CPU from it: the figure is a lower bound. The API process's own
CPU time per request is printed too; it does not depend on the machine's other load.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import time

import httpx

from bench.service_stack import TOKEN, Stack, machine

CONFIG = {"crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}},
          "structure_factors": {"default_F": 100},
          "detector": {"fast_pixels": 32, "slow_pixels": 32}}


async def _clients(url: str, n: int, seconds: float, etag: bool) -> tuple[int, int]:
    done = errors = 0
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"},
                                 limits=limits, timeout=30) as c:
        end = time.perf_counter() + seconds

        async def loop():
            nonlocal done, errors
            tag = None
            while time.perf_counter() < end:
                h = {"If-None-Match": tag} if (etag and tag) else {}
                r = await c.get(url, headers=h)
                if r.status_code in (200, 304):
                    done += 1
                    tag = r.headers.get("etag", tag)
                else:
                    errors += 1

        await asyncio.gather(*(loop() for _ in range(n)))
    return done, errors


async def _raw_clients(url: str, n: int, seconds: float, etag: bool) -> tuple[int, int]:
    u = httpx.URL(url)
    done = errors = 0
    end = time.perf_counter() + seconds

    async def loop():
        nonlocal done, errors
        reader, writer = await asyncio.open_connection(u.host, u.port)
        tag = None
        try:
            while time.perf_counter() < end:
                extra = f"If-None-Match: {tag}\r\n" if (etag and tag) else ""
                writer.write(f"GET {u.raw_path.decode()} HTTP/1.1\r\nHost: {u.host}\r\n"
                             f"Authorization: Bearer {TOKEN}\r\n{extra}\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    low = line.lower()
                    if low.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                    elif low.startswith(b"etag:"):
                        tag = line.split(b":", 1)[1].strip().decode()
                if length:
                    await reader.readexactly(length)
                if status in (200, 304):
                    done += 1
                else:
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(loop() for _ in range(n)))
    return done, errors


def _proc(url, n, seconds, etag, q, raw=True):
    q.put(asyncio.run((_raw_clients if raw else _clients)(url, n, seconds, etag)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its waited-for children), from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def run(url: str, clients: int, procs: int, seconds: float, etag: bool,
        raw: bool = True) -> tuple[float, int]:
    q = mp.Queue()
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    ps = [mp.Process(target=_proc, args=(url, n, seconds, etag, q, raw)) for n in per]
    for p in ps:
        p.start()
    res = [q.get() for _ in ps]
    for p in ps:
        p.join()
    return sum(r[0] for r in res) / seconds, sum(r[1] for r in res)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--client-procs", type=int, default=1)
    ap.add_argument("--httpx", action="store_true", help="clients on httpx.AsyncClient")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--api-workers", type=int, default=1)
    args = ap.parse_args(argv)
    with Stack(workers=1, api_workers=args.api_workers) as stack, stack.client() as c:
        jid = c.post("/v1/jobs", json={"config": CONFIG}).json()["id"]
        while c.get(f"/v1/jobs/{jid}").json()["status"] != "finished":
            time.sleep(0.05)
        url = f"{stack.base_url}/v1/jobs/{jid}"
        raw = not args.httpx
        run(url, args.clients, args.client_procs, 2, False, raw)  # warm-up
        api_pid = stack.procs[1].pid
        c0 = cpu_seconds(api_pid)
        plain, e1 = run(url, args.clients, args.client_procs, args.seconds, False, raw)
        c1 = cpu_seconds(api_pid)
        cond, e2 = run(url, args.clients, args.client_procs, args.seconds, True, raw)
        c2 = cpu_seconds(api_pid)
    print(f"machine: {machine()}")
    print(f"{args.clients} concurrent clients ({'httpx' if args.httpx else 'raw sockets'}) in "
          f"{args.client_procs} process(es), "
          f"{args.api_workers} uvicorn worker(s), {args.seconds:g} s each")
    print(f"GET /v1/jobs/{{id}} (200 with the record): {plain:.0f} requests/s ({e1} errors)")
    print(f"GET /v1/jobs/{{id}} with If-None-Match (304): {cond:.0f} requests/s ({e2} errors)")
    if args.api_workers == 1:
        for what, n, cpu in (("200", plain, c1 - c0), ("304", cond, c2 - c1)):
            per = cpu / (n * args.seconds)
            print(f"API process CPU per request ({what}): {per * 1e3:.2f} ms, i.e. "
                  f"{1 / per:.0f} requests/s per fully used core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
