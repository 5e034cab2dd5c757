"""Step time of the losses: forward + backward, side by side, on the CPU by default.

    python benchmarks/bench_losses.py [--batch-sizes 128 512] [--dim 512] [--repeats 30]
                                      [--relevance scenes continuous] [--threads N] [--device cpu]
                                      [--clock wall|cpu]

For each batch size B, random L2-normalised image and text features (B x dim, requires_grad)
are scored by every loss and the loss is backpropagated to the features; the time of that
(forward, backward) is taken ``--repeats`` times, the losses interleaved round-robin so that
machine load hits them alike, after warm-up runs. The median and the minimum are reported, and
each loss's median against the fixed ladder (L = 2). ``--clock cpu`` times with the CPU time of
this process (all its threads) instead of the wall clock: on a machine shared with other work it
leaves out the time the process waits for a core.

Relevance matrices:

* ``scenes``: a real training batch of the scene world (captions naming all or some of the five
  attributes, relevance = matched attribute weight / named weight): a few dozen distinct values
  per query, as relevance from tags or attributes has.
* ``continuous``: uniform random degrees, every value distinct: the worst case for the adaptive
  ladder's clustering.

``adaptive (levels given)`` times the adaptive ladder with its levels computed beforehand, as a
data pipeline can do in its workers (:meth:`AdaptiveLadderLoss.levels`); the levels alone are
timed as ``adaptive: levels only``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.losses import AdaptiveLadderLoss, InfoNCELoss, LadderLoss, TripletLoss

BASELINE = "ladder (L=2)"


def scene_relevance(batch: int, seed: int) -> torch.Tensor:
    """Relevance of a real scene-world training batch: R[i, j] = caption j against scene i."""
    from trainer import scenes
    from trainer.data import draw_captions, relevance_of

    batch_scenes = scenes.sample_scenes(batch, seed=seed)
    captions = draw_captions(batch_scenes, seed=seed, tokenizer=lambda texts: torch.zeros(len(texts), 1))
    return torch.from_numpy(relevance_of(captions.attributes, batch_scenes))


def continuous_relevance(batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, batch, generator=g).fill_diagonal_(1.0)


RELEVANCE: dict[str, Callable[[int, int], torch.Tensor]] = {
    "scenes": scene_relevance,
    "continuous": continuous_relevance,
}


def make_cases(
    relevance: torch.Tensor, image: torch.Tensor, text: torch.Tensor
) -> dict[str, Callable[[], torch.Tensor]]:
    """Every timed case: a function running forward + backward and returning the loss."""
    triplet = TripletLoss()
    infonce = InfoNCELoss()
    ladder2 = LadderLoss(thresholds=(0.63,), margins=(0.2, 0.01), betas=(1.0, 0.25))
    ladder5 = LadderLoss(
        thresholds=(0.8, 0.6, 0.4, 0.2),
        margins=(0.2, 0.01, 0.01, 0.01, 0.01),
        betas=(1, 1 / 4, 1 / 8, 1 / 16, 1 / 32),
    )
    adaptive = AdaptiveLadderLoss()
    levels = adaptive.levels(relevance)
    scale = torch.tensor(1 / 0.07, device=image.device)

    def step(loss, **kwargs) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            image.grad = None
            text.grad = None
            out = loss(image, text, relevance, **kwargs)["loss"]
            out.backward()
            return out

        return run

    def levels_only() -> torch.Tensor:
        return adaptive.levels(relevance)

    return {
        "triplet (VSE++)": step(triplet),
        "InfoNCE": step(infonce, logit_scale=scale),
        BASELINE: step(ladder2),
        "ladder (L=5)": step(ladder5),
        "adaptive (k 2..4)": step(adaptive),
        "adaptive (levels given)": step(adaptive, levels=levels),
        "adaptive: levels only": levels_only,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_cases(
    cases: dict[str, Callable[[], torch.Tensor]],
    repeats: int,
    warmup: int,
    device,
    clock: Callable[[], float],
) -> dict:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(warmup):
        for run in cases.values():
            run()
    sync(device)
    for _ in range(repeats):
        for name, run in cases.items():
            start = clock()
            run()
            sync(device)
            times[name].append(clock() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--dim", type=int, default=512, help="embedding width (512 as CLIP ViT-B)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--relevance", nargs="+", choices=sorted(RELEVANCE), default=["scenes", "continuous"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cpu = platform.processor() or platform.machine()
    print(
        f"# Loss step time (forward + backward), {device.type}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs ({cpu})"
    )
    if hasattr(os, "getloadavg"):
        print(f"# load average at start: {os.getloadavg()[0]:.1f}")
    print(
        f"# embedding dim {args.dim}, {args.clock} clock, median and min of {args.repeats} "
        f"interleaved runs after {args.warmup} warm-up"
    )
    print()
    print("| B | relevance | loss | median ms | min ms | median vs ladder (L=2) |")
    print("|---:|---|---|---:|---:|---:|")
    for batch in args.batch_sizes:
        g = torch.Generator().manual_seed(args.seed)
        image = F.normalize(torch.randn(batch, args.dim, generator=g), dim=1).to(device).requires_grad_()
        text = F.normalize(torch.randn(batch, args.dim, generator=g), dim=1).to(device).requires_grad_()
        for kind in args.relevance:
            relevance = RELEVANCE[kind](batch, args.seed).to(device)
            cases = make_cases(relevance, image, text)
            times = time_cases(cases, args.repeats, args.warmup, device, clock)
            base = statistics.median(times[BASELINE])
            for name, ts in times.items():
                med = statistics.median(ts)
                ratio = f"{med / base:.2f}x"
                print(f"| {batch} | {kind} | {name} | {med * 1e3:.2f} | {min(ts) * 1e3:.2f} | {ratio} |")
            distinct = [len(np.unique(row)) for row in relevance.cpu().numpy()]
            print(f"| {batch} | {kind} | (distinct relevance values per row: max {max(distinct)}) | | | |")
    if hasattr(os, "getloadavg"):
        print(f"\n# load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
