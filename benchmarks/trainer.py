"""Loader speed vs what training consumes, and the trainer's tokens/s, in one run.

    python benchmarks/trainer.py [--dataset DIR ...] [--model tiny] [--seconds 30]

Without ``--dataset`` it curates a small mixture first (random CartPole and the scripted
Meta-World reach, plus random Procgen coinrun for images) with ``kibble.pipelines.in_process``.

Measured side by side on this machine, same mixture, same batch size and context:

- loader: sequences/s of ``MixtureData.sample_batch`` alone (read Parquet row groups,
  cut windows, prompts, patches, collate);
- training: sequences/s the model's training steps consume (forward, backward, AdamW),
  with batches built in the loop as ``kibble train`` does, and tokens/s;
- the ratio loader / training (target >= 10x: the loader never holds training up);
- the CPU's float32 matrix-multiply peak (the best of several large matmuls on the same
  threads), measured before and after training, and the trainer's achieved FLOP/s
  (counted from the model's shapes: the output head at action positions and the patch
  embedding of every image patch included), and
  their ratio (target >= 60%). When the two peaks disagree by more than
  ``PEAK_SPREAD`` or the ratio would exceed 100%, the machine was busy: the ratio is
  not printed;
- with ``--compare``: the training paths (eager, ``torch.compile``, fused AdamW and
  both) measured side by side, interleaved over ``--repeats`` rounds, with the time to
  the first step (compilation included), the steady tokens/s against eager and the
  break-even number of steps;
- on a CUDA GPU, also the 79M model's tokens/s and model FLOPs utilization (bf16);
- with ``--profile``: the share of a CPU step spent building the batch, in the forward
  pass, the backward pass and the optimizer, and torch's top operators by self time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob
from kibble.trainer.config import MODEL_SIZES, DatasetSpec, MixtureConfig
from kibble.trainer.mixture_data import MixtureData
from kibble.trainer.model import Gato
from kibble.trainer.train import bfloat16

# Dense bf16 peak of the GPUs this project is lent, in TFLOP/s (vendor data sheets).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
PEAK_SPREAD = 0.05
"""Peaks measured before and after training that differ by more than this (relative):
the machine was not quiet, and no ratio to the peak is printed."""
PATHS = {
    "eager": {"compile": False, "fused": False},
    "fused": {"compile": False, "fused": True},
    "compile": {"compile": True, "fused": False},
    "compile+fused": {"compile": True, "fused": True},
}


def make_mixture(root: Path) -> list[Path]:
    jobs = [
        ("cartpole", TaskJob("gym/CartPole-v1", "random", 40)),
        ("reach", TaskJob("metaworld/reach-v3", "scripted", 6)),
        ("coinrun", TaskJob("procgen/coinrun", "random", 4, max_steps=100)),
    ]
    out = []
    for name, job in jobs:
        curate_tasks(name, [job], root / name, fraction=0.05)
        out.append(root / name)
    return out


def loader_rate(config: MixtureConfig, seconds: float) -> float:
    data = MixtureData(config)
    data.sample_batch(config.batch_size)  # warm the row-group cache, as a run does
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        data.sample_batch(config.batch_size)
        n += config.batch_size
    return n / (time.perf_counter() - start)


def flops_per_token(model: Gato, context: int) -> float:
    """6N for the matrices (forward + backward) plus attention's 12 * layers * width * T."""
    cfg = model.cfg
    n = model.num_parameters(embeddings=False)
    return 6 * n + 12 * cfg.layers * cfg.width * context


def matmul_peak(
    seconds: float, n: int = 1024, dtype: torch.dtype = torch.float32, repeats: int = 5
) -> float:
    """FLOP/s of (n x n) @ (n x n) products of ``dtype`` on this process's torch threads:
    the best of ``repeats`` windows of ``seconds / repeats`` (a window another process
    woke up in reads low; the best is the machine's)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / repeats:
            a @ b
            count += 1
        best = max(best, count * 2 * n**3 / (time.perf_counter() - start))
    return best


def peak_verdict(achieved: float, before: float, after: float) -> str:
    """The achieved rate against the peak, or why the figure would be noise."""
    spread = abs(before - after) / max(before, after)
    peaks = f"peak {before / 1e9:.1f} GFLOP/s before training, {after / 1e9:.1f} after"
    if spread > PEAK_SPREAD:
        return (
            f"{peaks}: they differ by {100 * spread:.0f}% (> {100 * PEAK_SPREAD:.0f}%), so "
            "the machine was busy; no ratio printed, run again on a quiet machine"
        )
    ratio = achieved / max(before, after)
    if ratio > 1.0:
        return f"{peaks}: training would be {100 * ratio:.0f}% of it: the machine was busy"
    return f"{peaks} (spread {100 * spread:.1f}%); training reached {100 * ratio:.0f}% of it"


def patch_flops(model: Gato) -> float:
    """Forward + backward of the patch embedding for one 16x16 image patch: the stem and
    the two 3x3 convolutions at every pixel, and the projection to the model's width
    (the norms and GELUs are elementwise and left out). At ``tiny`` a patch costs about
    twice a token's 6N, so leaving it out would undercount image-heavy batches."""
    cfg = model.cfg
    pixels = 16 * 16
    c, h = cfg.patch_channels, cfg.patch_hidden
    convs = pixels * 9 * 2 * (c * h + 2 * h * h)
    projection = 2 * h * pixels * cfg.width
    return 3 * (convs + projection)


def head_flops_per_target(model: Gato, legal: bool) -> float:
    """Forward + backward of the output head for one trained (action) token."""
    return 6 * model.cfg.width * (1024 if legal else model.embed.weight.shape[0])


def training_rate(
    config: MixtureConfig,
    seconds: float,
    device: torch.device,
    *,
    compile: bool | None = None,
    fused: bool = False,
) -> dict:
    """The training loop's rates over ``seconds`` after three warm-up steps (the first
    timed alone: ``first_step_s`` holds compilation). ``compile`` None: on a GPU only."""
    torch._dynamo.reset()  # each path compiles afresh: its first step counts it
    data = MixtureData(config)
    torch.manual_seed(0)
    model = Gato(config.model).to(device)
    opt = torch.optim.AdamW(
        model.optimizer_groups(0.1), lr=1e-4, betas=(0.9, 0.95), fused=fused or None
    )
    use_compile = device.type == "cuda" if compile is None else compile
    net = torch.compile(model) if use_compile else model
    autocast = torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=bfloat16(config.precision, device)
    )

    legal = config.action_logits == "legal"
    targets = patches = 0

    def step() -> int:
        nonlocal targets, patches
        batch = data.sample_batch(config.batch_size).to_torch(device)
        patches += int(batch["patch_index"].numel())
        with autocast:
            loss, _ = net(batch, legal_actions=legal)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        targets += int(batch["loss_mask"][:, 1:].sum())
        return int(batch["lengths"].sum())

    start = time.perf_counter()
    step()  # the first step: compilation, when compiled
    if device.type == "cuda":
        torch.cuda.synchronize()
    first_step_s = time.perf_counter() - start
    for _ in range(2):  # warm-up
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    steps = tokens = targets = patches = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        tokens += step()
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return {
        "steps_per_s": steps / elapsed,
        "sequences_per_s": steps * config.batch_size / elapsed,
        "tokens_per_s": tokens / elapsed,
        "flops_per_token": flops_per_token(model, config.context),
        "flops_per_s": (
            tokens * flops_per_token(model, config.context)
            + targets * head_flops_per_target(model, legal)
            + patches * patch_flops(model)
        )
        / elapsed,
        "patch_share": patches / max(tokens, 1),
        "parameters": model.num_parameters(),
        "first_step_s": first_step_s,
    }


def profile(config: MixtureConfig, steps: int = 20) -> None:
    """Where a CPU training step's time goes: the loop's phases, then torch's top ops."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    data = MixtureData(config)
    model = Gato(config.model)
    opt = torch.optim.AdamW(model.optimizer_groups(0.1), lr=1e-4, betas=(0.9, 0.95))
    legal = config.action_logits == "legal"
    phases = dict.fromkeys(("batch", "forward", "backward", "optimizer"), 0.0)

    def step() -> None:
        t0 = time.perf_counter()
        batch = data.sample_batch(config.batch_size).to_torch(torch.device("cpu"))
        t1 = time.perf_counter()
        loss, _ = model(batch, legal_actions=legal)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        for k, a, b in (("batch", t0, t1), ("forward", t1, t2), ("backward", t2, t3)):
            phases[k] += b - a
        phases["optimizer"] += t4 - t3

    for _ in range(3):
        step()
    phases.update(dict.fromkeys(phases, 0.0))
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    total = sum(phases.values())
    print(f"profile of {steps} steps ({total / steps * 1000:.0f} ms a step):")
    print("  " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in phases.items()))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def compare(config: MixtureConfig, seconds: float, repeats: int) -> None:
    """Every path of PATHS, interleaved over ``repeats`` rounds (a disturbance then hits
    them alike); each path's median and range, against eager measured the same way."""
    import torch._inductor.config

    # Every compiled path pays its compilation cold, as a first `kibble train` does (a
    # rerun on the same machine reuses inductor's on-disk cache and starts faster).
    torch._inductor.config.force_disable_caches = True
    runs: dict[str, list[dict]] = {name: [] for name in PATHS}
    for _ in range(repeats):
        for name, path in PATHS.items():
            runs[name].append(training_rate(config, seconds, torch.device("cpu"), **path))
    eager = statistics.median(r["tokens_per_s"] for r in runs["eager"])
    eager_step = 1 / statistics.median(r["steps_per_s"] for r in runs["eager"])
    eager_first = statistics.median(r["first_step_s"] for r in runs["eager"])
    print(f"training paths, {repeats} interleaved rounds of {seconds:.0f} s each (CPU):")
    for name, rs in runs.items():
        rates = sorted(r["tokens_per_s"] for r in rs)
        tokens = statistics.median(rates)
        first = statistics.median(r["first_step_s"] for r in rs)
        step_s = 1 / statistics.median(r["steps_per_s"] for r in rs)
        line = (
            f"  {name:14s} {tokens:9,.0f} tokens/s (range {rates[0]:,.0f}-{rates[-1]:,.0f}), "
            f"{tokens / eager:.2f}x eager; first step {first:.1f} s"
        )
        if name != "eager" and first > eager_first:
            if step_s < eager_step:
                steps = (first - eager_first) / (eager_step - step_s)
                line += f"; pays for its first step after {steps:,.0f} steps"
            else:
                line += "; never pays for its first step"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", action="append", type=Path, help="curated dataset(s)")
    parser.add_argument("--model", default="tiny", choices=sorted(MODEL_SIZES))
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--action-logits", default="full", choices=["full", "legal"])
    parser.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "bfloat16"],
        help="CPU training's matrix products (the mixture key precision)",
    )
    parser.add_argument("--profile", action="store_true", help="also: where a step's time goes")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="measure the CPU training paths side by side: " + ", ".join(PATHS),
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="with --compare: interleaved rounds per path"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        paths = args.dataset or make_mixture(Path(tmp))
        config = MixtureConfig(
            datasets=[DatasetSpec(str(p)) for p in paths],
            model=MODEL_SIZES[args.model],
            model_name=args.model,
            context=args.context,
            batch_size=args.batch_size,
            action_logits=args.action_logits,
            precision=args.precision,
        )
        peak_before = matmul_peak(min(args.seconds, 5.0))
        loader = loader_rate(config, args.seconds)
        cpu = training_rate(config, args.seconds, torch.device("cpu"))
        peak_after = matmul_peak(min(args.seconds, 5.0))
        print(f"mixture: {', '.join(str(p) for p in paths)}")
        print(f"context {config.context}, batch {config.batch_size}, model {args.model} (CPU)")
        print(f"loader:   {loader:10.1f} sequences/s")
        print(
            f"training: {cpu['sequences_per_s']:10.1f} sequences/s, "
            f"{cpu['tokens_per_s']:,.0f} tokens/s, {cpu['steps_per_s']:.2f} steps/s, "
            f"{cpu['parameters']:,} parameters; image patches {100 * cpu['patch_share']:.0f}% "
            "of the tokens"
        )
        print(f"loader / training: {loader / cpu['sequences_per_s']:.1f}x (target >= 10x)")
        peak = max(peak_before, peak_after)
        print(
            f"CPU float32 matmul on {args.threads} thread(s): training ({args.precision}, "
            f"action logits {args.action_logits}) achieved {cpu['flops_per_s'] / 1e9:.1f} "
            f"GFLOP/s; {peak_verdict(cpu['flops_per_s'], peak_before, peak_after)} "
            "(target >= 60%)"
        )
        if args.compare:
            compare(config, args.seconds, args.repeats)
        if args.precision == "bfloat16":
            # The fair peak for bfloat16 products (AMX or AVX-512 BF16 where the CPU has it).
            bf_peak = matmul_peak(min(args.seconds, 5.0), dtype=torch.bfloat16)
            print(
                f"CPU bfloat16 matmul peak: {bf_peak / 1e9:.1f} GFLOP/s "
                f"({bf_peak / peak:.1f}x float32); training achieved "
                f"{100 * cpu['flops_per_s'] / bf_peak:.0f}% of it"
            )
        if args.profile:
            profile(config)
        if torch.cuda.is_available():
            gpu_cfg = MixtureConfig(
                datasets=config.datasets,
                model=MODEL_SIZES["79m"],
                model_name="79m",
                context=1024,
                batch_size=32,
            )
            gpu = training_rate(gpu_cfg, args.seconds, torch.device("cuda"))
            name = torch.cuda.get_device_name()
            peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
            achieved = gpu["tokens_per_s"] * gpu["flops_per_token"] / 1e12
            mfu = f"{100 * achieved / peak:.1f}% of {peak:.0f}" if peak else "peak unknown"
            print(
                f"79m on {name}: {gpu['tokens_per_s']:,.0f} tokens/s, {achieved:.1f} TFLOP/s "
                f"(MFU {mfu} TFLOP/s bf16), context 1024, batch 32"
            )
            gpu_loader = loader_rate(gpu_cfg, args.seconds)
            print(
                f"loader at context 1024, batch 32: {gpu_loader:.1f} sequences/s = "
                f"{gpu_loader / gpu['sequences_per_s']:.1f}x the 79m's consumption"
            )
        else:
            print("no CUDA GPU here: the 79m tokens/s and MFU lines need one")


if __name__ == "__main__":
    main()
