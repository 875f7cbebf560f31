"""Round-trip latency and actions per second through `azote serve`, against calling the policy in process.

    python benchmarks/serve_latency.py                        # tiny on CPU, 1 and 4 clients, 1 torch thread
    python benchmarks/serve_latency.py --threads 2 --requests 40 --clients 1 2 4 8

A random-weight checkpoint of the preset is written to a temporary directory and served by `azote serve` in its
own process (as it would run), with the same number of torch threads as the in-process policy. Each client is a
thread with its own `ServeClient` sending one frame per request, one request at a time; with several clients the
server batches the requests that arrive together into one forward pass. The configurations run in the same
process, their rounds interleaved, so their ratios are not skewed by the machine's load changing between them.
"actions/s" is chunks per second times the chunk length (the actions the policy can feed a game); "ping" is the
round trip of an empty request (the transport and the server loop alone).
Prints a markdown table and writes it with the JSON results (default under runs/benchmarks/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from azote.policy import Policy, build_model, save_pretrained
from azote.serving.client import ServeClient


def start_server(checkpoint: Path, threads: int, batch_window_ms: float) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "azote.cli.main", "serve", str(checkpoint), "--port", "0", "--threads", str(threads),
           "--batch-window-ms", str(batch_window_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.startswith("listening "):
            return proc, line.split()[1]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("azote serve did not start")


def in_process(policy: Policy, frame: np.ndarray, requests: int, seed: int) -> list[float]:
    times = []
    for i in range(requests):
        t0 = time.perf_counter()
        policy.act(frame, seed=seed + i)
        times.append(time.perf_counter() - t0)
    return times


def served(address: str, frame: np.ndarray, clients: int, requests: int, seed: int) -> tuple[list[float], float, list[int]]:
    """Round trips of every request, the wall time of the whole burst, and the batch size of each reply."""
    rtts: list[list[float]] = [[] for _ in range(clients)]
    batches: list[list[int]] = [[] for _ in range(clients)]
    conns = [ServeClient(address, timeout=120) for _ in range(clients)]
    for c in conns:
        c.ping()  # connected before the clock starts
    barrier = threading.Barrier(clients + 1)

    def run(k: int) -> None:
        barrier.wait()
        for i in range(requests):
            t0 = time.perf_counter()
            p = conns[k].predict(frame, seed=[seed + 1000 * k + i])
            rtts[k].append(time.perf_counter() - t0)
            batches[k].append(p.batch_size)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    return [x for r in rtts for x in r], wall, [b for bs in batches for b in bs]


def pings(address: str, n: int) -> list[float]:
    with ServeClient(address, timeout=30) as c:
        return [c.ping() for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--requests", type=int, default=20, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, in process and in the server")
    parser.add_argument("--batch-window-ms", type=float, default=2.0)
    parser.add_argument("--frame", type=int, nargs=2, default=[210, 160], metavar=("H", "W"))
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/serve_latency.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frame = np.random.default_rng(0).integers(0, 256, (*args.frame, 3), dtype=np.uint8)

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / args.preset
        torch.manual_seed(0)
        save_pretrained(build_model(args.preset), checkpoint)
        policy = Policy.from_pretrained(checkpoint)
        horizon = policy.horizon
        proc, address = start_server(checkpoint, args.threads, args.batch_window_ms)
        try:
            policy.act(frame, seed=0)  # warm-up, both sides
            served(address, frame, 1, 2, 0)
            local: list[float] = []
            ping: list[float] = []
            remote: dict[int, dict[str, list]] = {c: {"rtt": [], "wall": [], "batch": []} for c in args.clients}
            for r in range(args.rounds):
                local += in_process(policy, frame, args.requests, seed=r * 100_000)
                ping += pings(address, args.requests)
                for c in args.clients:
                    rtt, wall, batch = served(address, frame, c, args.requests, seed=r * 100_000)
                    remote[c]["rtt"] += rtt
                    remote[c]["wall"].append(wall)
                    remote[c]["batch"] += batch
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            proc.terminate()
            proc.wait(30)

    rows: list[dict[str, Any]] = []
    local_chunks = len(local) / sum(local)
    rows.append({"mode": "in process", "clients": 1, "requests": len(local),
                 "ms_median": 1000 * statistics.median(local), "ms_p90": 1000 * _p(local, 0.9),
                 "chunks_per_s": local_chunks, "actions_per_s": local_chunks * horizon, "mean_batch": 1.0})
    for c in args.clients:
        d = remote[c]
        chunks = len(d["rtt"]) / sum(d["wall"])
        rows.append({"mode": "served", "clients": c, "requests": len(d["rtt"]),
                     "ms_median": 1000 * statistics.median(d["rtt"]), "ms_p90": 1000 * _p(d["rtt"], 0.9),
                     "chunks_per_s": chunks, "actions_per_s": chunks * horizon,
                     "mean_batch": statistics.fmean(d["batch"])})
    for row in rows:
        row["latency_vs_in_process"] = row["ms_median"] / rows[0]["ms_median"]
        row["throughput_vs_in_process"] = row["chunks_per_s"] / rows[0]["chunks_per_s"]
    ping_ms = 1000 * statistics.median(ping)
    cpu = platform.processor() or platform.machine()
    header = (f"Serving latency, `{args.preset}` on CPU ({args.threads} torch thread(s) in process and in the server; "
              f"{args.frame[0]}x{args.frame[1]} frames, chunks of {horizon} actions; torch {torch.__version__}, "
              f"{os.cpu_count()} CPUs, {cpu}; {args.rounds} interleaved rounds)")
    table = markdown(rows, header, ping_ms)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_json = args.out.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps({"header": header, "ping_ms_median": ping_ms, "results": rows}, indent=2) + "\n")
    os.replace(tmp_json, args.out)
    tmp_md = args.out.with_suffix(".md.tmp")
    tmp_md.write_text(table)
    os.replace(tmp_md, args.out.with_suffix(".md"))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)


def _p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def markdown(rows: list[dict[str, Any]], header: str, ping_ms: float) -> str:
    lines = [
        header, "",
        "| mode | clients | requests | round trip ms median | p90 | chunks/s | actions/s | mean batch | latency vs in process | throughput vs in process |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['clients']} | {r['requests']} | {r['ms_median']:.1f} | {r['ms_p90']:.1f} | "
                     f"{r['chunks_per_s']:.2f} | {r['actions_per_s']:.0f} | {r['mean_batch']:.2f} | "
                     f"{r['latency_vs_in_process']:.2f}x | {r['throughput_vs_in_process']:.2f}x |")
    lines += ["", f"Ping (empty request) round trip: {ping_ms:.2f} ms median."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
