"""HTTP serving: latency of single /recommend requests and throughput with concurrent clients.

Starts ``sidrec serve`` on a free 127.0.0.1 port (or uses ``--url`` of a running one), then, over
real loopback HTTP/1.1 keep-alive connections:

1. latency: one client, one request at a time (k=10, beam 10), ``--requests`` of them after
   ``--warmup``; p50/p90/p99 in ms;
2. throughput: ``--concurrency`` clients (asyncio, one connection each) send ``--load-requests``
   requests in all as fast as the server answers; requests/s and p50/p99 under load.

Histories are the test histories of the run (each user's sequence before its last item, the last
``model.max_history`` items), by item id. The clients are deliberately thin (raw HTTP over asyncio
streams, stdlib ``http.client``) so that they take little of the CPU they share with the server.

    python benchmarks/serve.py --run-dir runs/main-cpu [--requests 300] [--concurrency 32] [--threads 2]

Ends with the line ``serve_p99_ms: <x>`` (single-request p99).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_histories(run_dir: Path, max_history: int, count: int, seed: int = 0) -> list[list[str]]:
    from sidrec.run import load_dataset_files

    dataset = load_dataset_files(run_dir)
    items = [item["item_id"] for item in dataset.items]
    offsets, seq = dataset.seq_offsets, dataset.seq_items
    rng = np.random.default_rng(seed)
    users = rng.choice(len(offsets) - 1, size=min(count, len(offsets) - 1), replace=False)
    out = []
    for u in users:
        s = seq[offsets[u]:offsets[u + 1] - 1][-max_history:]
        out.append([items[i] for i in s])
    return out


def start_server(args, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sidrec.cli", "serve", f"run_dir={args.run_dir}", f"port={port}",
           f"decode.num_beams={args.beams}", f"max_batch={args.max_batch}", f"max_wait_ms={args.max_wait_ms}"]
    if args.threads:
        cmd.append(f"threads={args.threads}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit("server did not start in 180 s")


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p90_ms": round(float(np.percentile(a, 90)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2)}


def latency(host: str, port: int, bodies: list[bytes], warmup: int) -> list[float]:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    headers = {"Content-Type": "application/json"}
    times = []
    for i, body in enumerate(bodies):
        start = time.perf_counter()
        conn.request("POST", "/recommend", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - start) * 1000
        if response.status != 200:
            raise SystemExit(f"request failed: {response.status} {data[:300]!r}")
        if i >= warmup:
            times.append(elapsed)
    conn.close()
    return times


async def _client(host: str, port: int, bodies: list[bytes], counter: list[int], total: int,
                  times: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while counter[0] < total:
            i = counter[0]
            counter[0] += 1
            body = bodies[i % len(bodies)]
            request = (f"POST /recommend HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            start = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            times.append((time.perf_counter() - start) * 1000)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def throughput(host: str, port: int, bodies: list[bytes], clients: int, total: int):
    counter, times, errors = [0], [], []
    start = time.perf_counter()
    await asyncio.gather(*(_client(host, port, bodies, counter, total, times, errors) for _ in range(clients)))
    return time.perf_counter() - start, times, errors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", default="runs/main-cpu")
    p.add_argument("--url", default="", help="use a running server (http://127.0.0.1:PORT) instead of starting one")
    p.add_argument("--requests", type=int, default=300, help="single-client requests (after warmup)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--load-requests", type=int, default=1500, help="requests in all for the throughput run")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--beams", type=int, default=10)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=0, help="server torch threads (0 = default)")
    args = p.parse_args()
    run_dir = Path(args.run_dir)
    from sidrec.run import RunDir

    histories = test_histories(run_dir, RunDir(run_dir).config.model.max_history, 1000)
    bodies = [json.dumps({"history": h, "k": args.k}).encode() for h in histories]

    proc = None
    if args.url:
        host, port = args.url.split("//")[-1].split(":")
        port = int(port)
    else:
        host, port = "127.0.0.1", free_port()
        proc = start_server(args, port)
    try:
        single = latency(host, port, bodies[: args.warmup + args.requests], args.warmup)
        # warm the concurrent path a little, then measure
        asyncio.run(throughput(host, port, bodies, args.concurrency, args.concurrency))
        wall, loaded, errors = asyncio.run(throughput(host, port, bodies, args.concurrency, args.load_requests))
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/health")
        health = json.loads(conn.getresponse().read())
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    result = {
        "run_dir": str(run_dir), "cpus": os.cpu_count(), "k": args.k, "beams": args.beams,
        "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "server_threads": args.threads or "default",
        "single": {"requests": len(single), **percentiles(single)},
        "concurrent": {"clients": args.concurrency, "requests": len(loaded), "errors": len(errors),
                       "seconds": round(wall, 2), "requests_per_s": round(len(loaded) / wall, 1),
                       **percentiles(loaded)},
        "server_batching": health.get("batching"),
    }
    print(json.dumps(result, indent=2))
    print(f"serve_p99_ms: {result['single']['p99_ms']}")


if __name__ == "__main__":
    main()
