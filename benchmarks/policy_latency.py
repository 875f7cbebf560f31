"""Latency, FLOPs and peak memory of one action chunk: the cached sampler (plain, with pre-packed CPU weights,
or with its steps graphed on CUDA) against the straightforward one, and the accuracy of bfloat16.

    python benchmarks/policy_latency.py --presets nitrogen-500m --threads 2            # CPU, float32
    python benchmarks/policy_latency.py --presets nitrogen-500m --threads 1 2 --dtype float32 bfloat16
    python benchmarks/policy_latency.py --presets nitrogen-500m --device cuda --dtype bfloat16 --batch 1 8 32

Every variant of a configuration runs in the same process, their repeats interleaved, so that their ratios are
not skewed by the machine's load changing between them; speed-ups are against the straightforward sampler of the
same run. Times are per action chunk (a call's time divided by the batch size); "best" is the fastest repeat,
"median" the median one; chunks/s is the batch over a call's best time. Variants:
- `straightforward`: the VL stack and every cross-attention's keys/values recomputed at each step (as released);
- `cached`: those computed once per observation (`azote.policy.sampling`);
- `cached+packed` (CPU, float32): the denoising steps' weights pre-packed for oneDNN (`azote.policy.fast`; what
  `Policy` does by default there);
- `cached+graph` (CUDA): the Euler steps replayed as one CUDA graph (`azote.policy.fast.GraphedSteps`).
The models have the weights of `azote.policy.seeded` (activations of order one, unlike a fresh init whose outputs
hardly move), so the accuracy columns mean something: for bfloat16 (and for packing), the largest difference of
the sampled chunk from float32's (same device, TF32 off) for the same frame and noise, before decoding and
after (sticks), and the
decoded buttons (of H x 17) that change. FLOPs are counted by torch's FlopCounterMode (matmuls, convolutions
and attention). Peak memory (CPU): the peak resident set of a fresh process while it samples once, and its rise
above the built model's; on CUDA the peak allocated memory and its rise above the weights.
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
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from azote.gamepad import ActionChunk
from azote.policy import build_model, get_preset, sample_actions
from azote.policy.fast import GraphedSteps, cpu_has_native_bf16, pack_for_cpu, unpack
from azote.policy.model import NitroGenModel
from azote.policy.seeded import fill_seeded_

DEFAULT_REPEATS = {"tiny": 20, "small": 5, "nitrogen-500m": 2}


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
    return fill_seeded_(build_model(get_preset(preset))).to(device=device, dtype=dtype).eval()


def _inputs(model: NitroGenModel, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = model.config
    g = torch.Generator().manual_seed(0)
    s = c.vision.image_size
    pixels = torch.rand(batch, c.num_frames, 3, s, s, generator=g) * 2 - 1
    noise = torch.randn(batch, c.action_horizon, c.action_dim, generator=g)
    return pixels.to(model.device, model.dtype), noise


def _sampler(model: NitroGenModel, variant: str, batch: int, steps: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The function one variant samples with: (pixels, noise) -> chunks (float32, standard layout)."""
    if variant == "straightforward":
        return lambda pixels, noise: sample_actions(model, pixels, noise=noise, num_steps=steps, cached=False)
    if variant in ("cached", "cached+packed"):
        return lambda pixels, noise: sample_actions(model, pixels, noise=noise, num_steps=steps)
    if variant == "cached+graph":
        graphed = GraphedSteps(model, batch, steps)

        def run(pixels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                out = graphed.run(model.encode_observation(pixels), noise.to(model.device))
            return model.to_standard_layout(out)

        return run
    raise ValueError(f"unknown variant {variant!r}")


def variants_for(device: str, dtype: torch.dtype, graph: bool) -> list[str]:
    out = ["straightforward", "cached"]
    if device == "cpu" and dtype == torch.float32:
        out.append("cached+packed")
    if device.startswith("cuda") and graph:
        out.append("cached+graph")
    return out


def _packing(model: NitroGenModel, variant: str) -> None:
    if variant == "cached+packed":
        pack_for_cpu(model)
    else:
        unpack(model)


def _run(model: NitroGenModel, fn: Callable[..., torch.Tensor], pixels: torch.Tensor, noise: torch.Tensor) -> float:
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(pixels, noise)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _flops(fn: Callable[..., torch.Tensor], pixels: torch.Tensor, noise: torch.Tensor) -> int:
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
        fn(pixels, noise)
    return counter.get_total_flops()


def accuracy(chunks: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """How far sampled chunks [B, H, A] are from a float32 reference: raw and decoded."""
    a, r = chunks.float().cpu().numpy(), reference.float().cpu().numpy()
    da = [ActionChunk.from_model_vectors(x) for x in a]
    dr = [ActionChunk.from_model_vectors(x) for x in r]
    flipped = sum(int((x.buttons != y.buttons).sum()) for x, y in zip(da, dr))
    buttons = sum(x.buttons.size for x in dr)
    stick = max(float(np.abs(np.concatenate([x.j_left - y.j_left, x.j_right - y.j_right])).max()) for x, y in zip(da, dr))
    return {"max_abs_diff": float(np.abs(a - r).max()), "stick_max_diff": stick, "buttons_changed": flipped,
            "buttons_total": buttons}


def memory_child(preset: str, variant: str, batch: int, steps: int, dtype: str) -> None:
    """Runs in a fresh process (so no freed memory is waiting for reuse): the peak resident set while sampling once.
    Linux's peak-RSS counter (VmHWM) is reset after the model is built, so it measures the sampling alone."""
    model = _model(preset, "cpu", getattr(torch, dtype))
    _packing(model, variant)
    pixels, noise = _inputs(model, batch)
    fn = _sampler(model, variant, batch, steps)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _proc_status_mib("VmRSS")
    fn(pixels, noise)
    print(json.dumps({"peak_mib": _proc_status_mib("VmHWM"), "before_mib": before}))


def _cpu_memory(preset: str, variant: str, batch: int, steps: int, dtype: str, threads: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--memory-child", preset, variant, "--batch", str(batch), "--steps", str(steps),
           "--dtype", dtype, "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = json.loads(out.strip().splitlines()[-1])
    return {"peak_mib": m["peak_mib"], "rise_mib": m["peak_mib"] - m["before_mib"]}


def bench_preset(preset: str, args: argparse.Namespace, batch: int, dtype_name: str,
                 reference: dict[tuple[str, int], torch.Tensor]) -> list[dict[str, Any]]:
    dtype = getattr(torch, dtype_name)
    model = _model(preset, args.device, dtype)
    pixels, noise = _inputs(model, batch)
    repeats = args.repeats or DEFAULT_REPEATS.get(preset, 3)
    variants = variants_for(args.device, dtype, not args.no_graph)
    if "cached+packed" in variants and not pack_for_cpu(model):  # nothing large enough to pack: same as cached
        variants.remove("cached+packed")
    unpack(model)
    fns = {v: _sampler(model, v, batch, args.steps) for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    outputs: dict[str, torch.Tensor] = {}
    for v in variants:  # warm-up (and the chunks compared for accuracy)
        _packing(model, v)
        outputs[v] = fns[v](pixels, noise)
    for _ in range(repeats):
        for v in variants:
            _packing(model, v)
            times[v].append(_run(model, fns[v], pixels, noise) / batch)
    key = (preset, batch)
    if dtype == torch.float32 and args.device == "cpu":
        reference.setdefault(key, outputs["cached"])
    if key not in reference:  # float32 on the same device (TF32 off), the same weights, frame and noise
        ref_model = _model(preset, args.device, torch.float32)
        reference[key] = sample_actions(ref_model, pixels.float(), noise=noise, num_steps=args.steps).cpu()
        del ref_model
    unpack(model)  # the packed and graphed variants do the cached sampler's arithmetic, in kernels not counted
    flops = {v: _flops(fns[v], pixels, noise) / batch / 1e9 for v in ("straightforward", "cached")}
    rows = []
    for v in variants:
        _packing(model, v)
        row: dict[str, Any] = {
            "preset": preset, "threads": torch.get_num_threads(), "parameters": model.num_parameters(),
            "device": args.device, "dtype": dtype_name, "batch": batch, "steps": args.steps, "sampler": v,
            "repeats": repeats, "ms_best": 1000 * min(times[v]), "ms_median": 1000 * statistics.median(times[v]),
            "chunks_per_s": 1.0 / min(times[v]),
            "gflop_per_chunk": flops["cached" if v.startswith("cached") else v],
        }
        if key in reference and not (dtype == torch.float32 and args.device == "cpu" and v == "cached"):
            row["accuracy_vs_float32"] = accuracy(outputs[v], reference[key])
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            _run(model, fns[v], pixels, noise)
            row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
            row["rise_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        elif not args.no_memory:
            row.update(_cpu_memory(preset, v, batch, args.steps, dtype_name, torch.get_num_threads()))
        rows.append(row)
    straight = rows[0]
    for row in rows:
        row["speedup_best"] = straight["ms_best"] / row["ms_best"]
        row["speedup_median"] = straight["ms_median"] / row["ms_median"]
        row["flop_ratio"] = straight["gflop_per_chunk"] / row["gflop_per_chunk"]
    del model, fns
    return rows


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [
        header,
        "",
        "| preset | device | threads | batch | sampler | ms/chunk best | median | chunks/s | GFLOP/chunk | speed-up | "
        "peak MiB (rise) | max diff vs f32 (sticks) | buttons changed |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        mem = f"{r['peak_mib']:.0f} ({r['rise_mib']:.0f})" if "peak_mib" in r else "-"
        acc = r.get("accuracy_vs_float32")
        diff = f"{acc['max_abs_diff']:.2g} ({acc['stick_max_diff']:.2g})" if acc else "-"
        flips = f"{acc['buttons_changed']} / {acc['buttons_total']}" if acc else "-"
        lines.append(
            f"| {r['preset']} | {r['device']} {r['dtype']} | {r['threads']} | {r['batch']} | {r['sampler']} | "
            f"{r['ms_best']:.1f} | {r['ms_median']:.1f} | {r['chunks_per_s']:.2f} | {r['gflop_per_chunk']:.2f} | "
            f"{r['speedup_best']:.2f}x | {mem} | {diff} | {flips} |"
        )
    return "\n".join(lines) + "\n"


def _check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        built = torch.version.cuda
        why = f"no CUDA device is visible (torch {torch.__version__}, CUDA {built})" if built else \
            f"this torch ({torch.__version__}) is built without CUDA"
        raise SystemExit(f"--device {device}: {why}")
    if device != "cpu" and not device.startswith("cuda"):
        raise SystemExit(f"--device {device}: expected cpu, cuda or cuda:N")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "nitrogen-500m"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16", "float16"],
                        help="one run each; float32 runs first on the CPU and is the accuracy reference")
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=0, help="timed repeats per sampler (default: per preset)")
    parser.add_argument("--threads", type=int, nargs="+", default=[0], help="torch intra-op threads, one run each (0: torch's default)")
    parser.add_argument("--no-memory", action="store_true", help="skip the CPU peak-memory processes")
    parser.add_argument("--no-graph", action="store_true", help="CUDA: skip the graphed-steps variant")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/policy_latency.json"))
    parser.add_argument("--memory-child", nargs=2, metavar=("PRESET", "SAMPLER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    if args.memory_child:
        torch.set_num_threads(args.threads[0] or default_threads)
        memory_child(*args.memory_child, args.batch[0], args.steps, args.dtype[0])
        return
    _check_device(args.device)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 here

    rows: list[dict[str, Any]] = []
    reference: dict[tuple[str, int], torch.Tensor] = {}
    dtypes = sorted(args.dtype, key=lambda d: d != "float32")
    for threads in args.threads:
        torch.set_num_threads(threads or default_threads)
        for preset in args.presets:
            for dtype in dtypes:
                for batch in args.batch:
                    rows.extend(bench_preset(preset, args, batch, dtype, reference))
                    print(f"done: {preset} {dtype} batch {batch} threads {torch.get_num_threads()}", file=sys.stderr,
                          flush=True)
    cpu = platform.processor() or platform.machine()
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"{os.cpu_count()} CPUs, {cpu}, {torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_native_bf16()}"
    header = f"Policy latency per action chunk ({args.steps} Euler steps; torch {torch.__version__}, {where})"
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
