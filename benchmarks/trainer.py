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
- the CPU's float32 matrix-multiply peak (a large matmul on the same threads) and the
  trainer's achieved FLOP/s (counted from the model's shapes, the output head at action
  positions included), and their ratio (target >= 50%);
- on a CUDA GPU, also the 79M model's tokens/s and model FLOPs utilization (bf16);
- with ``--profile``: the share of a CPU step spent building the batch, in the forward
  pass, the backward pass and the optimizer, and torch's top operators by self time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob
from kibble.trainer.config import MODEL_SIZES, DatasetSpec, MixtureConfig
from kibble.trainer.data import MixtureData
from kibble.trainer.model import Gato
from kibble.trainer.train import bfloat16

# Dense bf16 peak of the GPUs this project is lent, in TFLOP/s (vendor data sheets).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


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


def matmul_peak(seconds: float, n: int = 1024, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of (n x n) @ (n x n) products of ``dtype`` on this process's torch threads."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return count * 2 * n**3 / (time.perf_counter() - start)


def head_flops_per_target(model: Gato, legal: bool) -> float:
    """Forward + backward of the output head for one trained (action) token."""
    return 6 * model.cfg.width * (1024 if legal else model.embed.weight.shape[0])


def training_rate(config: MixtureConfig, seconds: float, device: torch.device) -> dict:
    data = MixtureData(config)
    model = Gato(config.model).to(device)
    opt = torch.optim.AdamW(model.optimizer_groups(0.1), lr=1e-4, betas=(0.9, 0.95))
    net = torch.compile(model) if device.type == "cuda" else model
    autocast = torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=bfloat16(config.precision, device)
    )

    legal = config.action_logits == "legal"
    targets = 0

    def step() -> int:
        nonlocal targets
        batch = data.sample_batch(config.batch_size).to_torch(device)
        with autocast:
            loss, _ = net(batch, legal_actions=legal)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        targets += int(batch["loss_mask"][:, 1:].sum())
        return int(batch["lengths"].sum())

    for _ in range(3):  # warm-up (and compilation on a GPU)
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    steps = tokens = targets = 0
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
        )
        / elapsed,
        "parameters": model.num_parameters(),
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
        loader = loader_rate(config, args.seconds)
        cpu = training_rate(config, args.seconds, torch.device("cpu"))
        print(f"mixture: {', '.join(str(p) for p in paths)}")
        print(f"context {config.context}, batch {config.batch_size}, model {args.model} (CPU)")
        print(f"loader:   {loader:10.1f} sequences/s")
        print(
            f"training: {cpu['sequences_per_s']:10.1f} sequences/s, "
            f"{cpu['tokens_per_s']:,.0f} tokens/s, {cpu['steps_per_s']:.2f} steps/s, "
            f"{cpu['parameters']:,} parameters"
        )
        print(f"loader / training: {loader / cpu['sequences_per_s']:.1f}x (target >= 10x)")
        peak = matmul_peak(min(args.seconds, 5.0))
        print(
            f"CPU float32 matmul peak on {args.threads} thread(s): {peak / 1e9:.1f} GFLOP/s; "
            f"training ({args.precision}) achieved {cpu['flops_per_s'] / 1e9:.1f} GFLOP/s "
            f"({100 * cpu['flops_per_s'] / peak:.0f}% of the float32 peak, target >= 50%; "
            f"action logits {args.action_logits})"
        )
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
