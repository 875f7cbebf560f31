"""Latency, FLOPs and peak memory of one action chunk: the cached sampler against the straightforward one.

    python benchmarks/policy_latency.py --threads 1 2                    # tiny, small, nitrogen-500m on CPU
    python benchmarks/policy_latency.py --presets nitrogen-500m --device cuda --dtype bfloat16 --batch 1 8

Both samplers run in the same process, their repeats interleaved, so that their ratio is not skewed by the
machine's load changing between them. Times are per action chunk (a call's time divided by the batch size);
"best" is the fastest repeat, "median" the median one. FLOPs are counted by torch's FlopCounterMode (matmuls,
convolutions and attention). Peak memory: on CPU the peak resident set of a fresh process while it samples once
(and its rise above the resident set of the built model: the sampler's own working memory); on CUDA the peak
allocated memory (and its rise above the weights).
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
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from azote.policy import build_model, get_preset
from azote.policy.model import NitroGenModel

DEFAULT_REPEATS = {"tiny": 20, "small": 5, "nitrogen-500m": 2}
SAMPLERS = ("cached", "straightforward")


def _cpu_sdpa_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    # FlopCounterMode counts the CUDA attention kernels but not the CPU one.
    return sdpa_flop_count(query, key, value)


FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def _proc_status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _model(preset: str, device: str, dtype: torch.dtype) -> NitroGenModel:
    torch.manual_seed(0)
    return build_model(get_preset(preset)).to(device=device, dtype=dtype).eval()


def _inputs(model: NitroGenModel, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = model.config
    g = torch.Generator().manual_seed(0)
    s = c.vision.image_size
    pixels = torch.rand(batch, c.num_frames, 3, s, s, generator=g) * 2 - 1
    noise = torch.randn(batch, c.action_horizon, c.action_dim, generator=g)
    return pixels.to(model.device, model.dtype), noise


def _run(model: NitroGenModel, pixels: torch.Tensor, noise: torch.Tensor, sampler: str, steps: int) -> float:
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.sample(pixels, noise=noise, num_steps=steps, cached=sampler == "cached")
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _flops(model: NitroGenModel, pixels: torch.Tensor, noise: torch.Tensor, sampler: str, steps: int) -> int:
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
        model.sample(pixels, noise=noise, num_steps=steps, cached=sampler == "cached")
    return counter.get_total_flops()


def memory_child(preset: str, sampler: str, batch: int, steps: int, dtype: str) -> None:
    """Runs in a fresh process (so no freed memory is waiting for reuse): the peak resident set while sampling once.
    Linux's peak-RSS counter (VmHWM) is reset after the model is built, so it measures the sampling alone."""
    model = _model(preset, "cpu", getattr(torch, dtype))
    pixels, noise = _inputs(model, batch)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _proc_status_mib("VmRSS")
    _run(model, pixels, noise, sampler, steps)
    print(json.dumps({"peak_mib": _proc_status_mib("VmHWM"), "before_mib": before}))


def _cpu_memory(preset: str, sampler: str, batch: int, steps: int, dtype: str, threads: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--memory-child", preset, sampler, "--batch", str(batch), "--steps", str(steps),
           "--dtype", dtype, "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = json.loads(out.strip().splitlines()[-1])
    return {"peak_mib": m["peak_mib"], "rise_mib": m["peak_mib"] - m["before_mib"]}


def bench_preset(preset: str, args: argparse.Namespace, batch: int) -> list[dict[str, Any]]:
    dtype = getattr(torch, args.dtype)
    model = _model(preset, args.device, dtype)
    pixels, noise = _inputs(model, batch)
    repeats = args.repeats or DEFAULT_REPEATS.get(preset, 3)
    times: dict[str, list[float]] = {s: [] for s in SAMPLERS}
    for sampler in SAMPLERS:  # warm-up
        _run(model, pixels, noise, sampler, args.steps)
    for _ in range(repeats):
        for sampler in SAMPLERS:
            times[sampler].append(_run(model, pixels, noise, sampler, args.steps) / batch)
    rows = []
    for sampler in SAMPLERS:
        row: dict[str, Any] = {
            "preset": preset,
            "threads": torch.get_num_threads(),
            "parameters": model.num_parameters(),
            "device": args.device,
            "dtype": args.dtype,
            "batch": batch,
            "steps": args.steps,
            "sampler": sampler,
            "repeats": repeats,
            "ms_best": 1000 * min(times[sampler]),
            "ms_median": 1000 * statistics.median(times[sampler]),
            "gflop_per_chunk": _flops(model, pixels, noise, sampler, args.steps) / batch / 1e9,
        }
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            _run(model, pixels, noise, sampler, args.steps)
            row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
            row["rise_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        elif not args.no_memory:
            row.update(_cpu_memory(preset, sampler, batch, args.steps, args.dtype, torch.get_num_threads()))
        rows.append(row)
    cached, straight = rows
    for row in rows:
        row["speedup_best"] = straight["ms_best"] / cached["ms_best"]
        row["speedup_median"] = straight["ms_median"] / cached["ms_median"]
        row["flop_ratio"] = straight["gflop_per_chunk"] / cached["gflop_per_chunk"]
    del model
    return rows


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [
        header,
        "",
        "| preset | params | device | threads | batch | sampler | ms/chunk best | ms/chunk median | GFLOP/chunk | peak MiB (rise) |",
        "| --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        mem = f"{r['peak_mib']:.0f} ({r['rise_mib']:.0f})" if "peak_mib" in r else "-"
        lines.append(
            f"| {r['preset']} | {r['parameters'] / 1e6:.1f}M | {r['device']} {r['dtype']} | {r['threads']} | {r['batch']} | {r['sampler']} | "
            f"{r['ms_best']:.1f} | {r['ms_median']:.1f} | {r['gflop_per_chunk']:.2f} | {mem} |"
        )
    lines += ["", "| preset | threads | batch | speed-up best (median) | FLOP ratio |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if r["sampler"] == "cached":
            lines.append(
                f"| {r['preset']} | {r['threads']} | {r['batch']} | {r['speedup_best']:.2f}x ({r['speedup_median']:.2f}x) | {r['flop_ratio']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "nitrogen-500m"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=0, help="timed repeats per sampler (default: per preset)")
    parser.add_argument("--threads", type=int, nargs="+", default=[0], help="torch intra-op threads, one run each (0: torch's default)")
    parser.add_argument("--no-memory", action="store_true", help="skip the CPU peak-memory processes")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/policy_latency.json"))
    parser.add_argument("--memory-child", nargs=2, metavar=("PRESET", "SAMPLER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    if args.memory_child:
        torch.set_num_threads(args.threads[0] or default_threads)
        memory_child(*args.memory_child, args.batch[0], args.steps, args.dtype)
        return

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads or default_threads)
        for preset in args.presets:
            for batch in args.batch:
                rows.extend(bench_preset(preset, args, batch))
                print(f"done: {preset} batch {batch} threads {torch.get_num_threads()}", file=sys.stderr, flush=True)
    cpu = platform.processor() or platform.machine()
    header = (
        f"Policy latency per action chunk ({args.steps} Euler steps; torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, {cpu})"
    )
    table = markdown(rows, header)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"header": header, "results": rows}, indent=2) + "\n")
    os.replace(tmp, args.out)
    md_tmp = args.out.with_suffix(".md.tmp")
    md_tmp.write_text(table)
    os.replace(md_tmp, args.out.with_suffix(".md"))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
