"""Step time of the losses: forward + backward, side by side, on the CPU by default.

    python benchmarks/bench_losses.py [--batch-sizes 128 512] [--dim 512] [--repeats 30]
                                      [--relevance scenes continuous] [--threads N] [--device cpu]
                                      [--clock wall|cpu] [--step-batch 128] [--step-repeats 10]
                                      [--levels-baseline GIT_REVISION]

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

``adaptive, levels in the step`` computes the adaptive levels inside the loss;
``adaptive, levels from the pipeline`` takes them computed beforehand, as the training data
pipeline does (:attr:`AdaptiveLadderLoss.level_settings`, in the thread that makes batches
ahead); ``levels only`` is what that costs the pipeline per batch. With ``--levels-baseline REV``
the levels are also computed by ``trainer/levels.py`` as it was at git revision REV (its
``adaptive_levels`` on the off-diagonal rows and columns), side by side.

Then a whole training step of the starter architecture (``ladderlens-starter``, random weights)
at ``--step-batch``: both towers forward, the loss, backward, gradient clipping and AdamW, with a
scene-world batch's captions and relevance (images random: their content does not change the
time), for the fixed ladder and the adaptive ladder with levels in the step or from the pipeline
(``--step-repeats 0`` skips it).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.losses import AdaptiveLadderLoss, InfoNCELoss, LadderLoss, TripletLoss

REPO = Path(__file__).resolve().parents[1]

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


def levels_module_at(revision: str) -> types.ModuleType:
    """``trainer/levels.py`` as it was at a git revision, loaded as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{revision}:trainer/levels.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType(f"levels_at_{revision}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:trainer/levels.py", "exec"), module.__dict__)
    return module


def off_diagonal_rows(relevance: torch.Tensor) -> torch.Tensor:
    """(2B, B-1): every row, then every column, without its diagonal entry."""
    b = relevance.shape[0]

    def rows(m: torch.Tensor) -> torch.Tensor:
        return m.reshape(-1)[1:].view(b - 1, b + 1)[:, :-1].reshape(b, b - 1)

    return torch.cat([rows(relevance), rows(relevance.T.contiguous())])


def make_cases(
    relevance: torch.Tensor,
    image: torch.Tensor,
    text: torch.Tensor,
    baseline: tuple[str, types.ModuleType] | None = None,
) -> dict[str, Callable[[], object]]:
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
    settings = adaptive.level_settings
    levels = settings(relevance)
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
        return settings(relevance)

    cases = {
        "triplet (VSE++)": step(triplet),
        "InfoNCE": step(infonce, logit_scale=scale),
        BASELINE: step(ladder2),
        "ladder (L=5)": step(ladder5),
        "adaptive, levels in the step": step(adaptive),
        "adaptive, levels from the pipeline": step(adaptive, levels=levels),
        "levels only (the pipeline's cost)": levels_only,
    }
    if baseline is not None:
        revision, module = baseline

        def levels_at_baseline() -> object:
            return module.adaptive_levels(off_diagonal_rows(relevance), 2, 4)

        cases[f"levels only, as at {revision}"] = levels_at_baseline
    return cases


def make_training_steps(batch: int, seed: int, clock: Callable[[], float]) -> dict[str, Callable[[], float]]:
    """Whole training steps of the starter architecture: fixed ladder, adaptive in-step, pipelined.

    Each function runs one step and returns its time on ``clock`` (the levels the pipeline makes
    ahead are computed before the clock starts).
    """
    import open_clip

    from core.models import STARTER_ARCH, register_bundled_configs
    from trainer import scenes
    from trainer.data import Batch, draw_captions, relevance_of
    from trainer.objectives import Objective
    from trainer.train import TrainConfig, TwinTowerForward, _train_step, create_model, pipeline_levels

    register_bundled_configs()
    torch.manual_seed(seed)
    model = create_model(STARTER_ARCH)
    model.train()
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else int(size)
    tokenizer = open_clip.get_tokenizer(STARTER_ARCH)
    batch_scenes = scenes.sample_scenes(batch, seed=seed)
    captions = draw_captions(batch_scenes, seed=seed, tokenizer=tokenizer)
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=g)
    relevance = torch.from_numpy(relevance_of(captions.attributes, batch_scenes))
    config = TrainConfig(arch=STARTER_ARCH)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)
    forward = TwinTowerForward(model)
    device = torch.device("cpu")
    fixed, adaptive = Objective("ladder2"), Objective("adaptive")
    settings = pipeline_levels([adaptive])

    def step(objective, with_levels: bool) -> Callable[[], float]:
        def run() -> float:
            levels = settings(relevance) if with_levels else None  # made ahead: not timed below
            made = Batch(images, captions.tokens, relevance, torch.arange(batch), captions.attributes, levels)
            start = clock()
            _train_step(forward, model, objective, optimizer, made, config, device, None, settings)
            return clock() - start

        return run

    return {
        "step, " + BASELINE: step(fixed, False),
        "step, adaptive, levels in the step": step(adaptive, False),
        "step, adaptive, levels from the pipeline": step(adaptive, True),
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
    parser.add_argument("--step-batch", type=int, default=128, help="batch of the whole training steps")
    parser.add_argument("--step-repeats", type=int, default=10, help="whole training steps timed (0: none)")
    parser.add_argument("--levels-baseline", metavar="REV", help="also time trainer/levels.py as at git REV")
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
    baseline = None
    if args.levels_baseline:
        baseline = (args.levels_baseline, levels_module_at(args.levels_baseline))
        print(f"# levels also as at {args.levels_baseline}")
    print()
    print("| B | relevance | loss | median ms | min ms | median vs ladder (L=2) |")
    print("|---:|---|---|---:|---:|---:|")
    for batch in args.batch_sizes:
        g = torch.Generator().manual_seed(args.seed)
        image = F.normalize(torch.randn(batch, args.dim, generator=g), dim=1).to(device).requires_grad_()
        text = F.normalize(torch.randn(batch, args.dim, generator=g), dim=1).to(device).requires_grad_()
        for kind in args.relevance:
            relevance = RELEVANCE[kind](batch, args.seed).to(device)
            cases = make_cases(relevance, image, text, baseline)
            times = time_cases(cases, args.repeats, args.warmup, device, clock)
            base = statistics.median(times[BASELINE])
            for name, ts in times.items():
                med = statistics.median(ts)
                ratio = f"{med / base:.2f}x"
                print(f"| {batch} | {kind} | {name} | {med * 1e3:.2f} | {min(ts) * 1e3:.2f} | {ratio} |")
            distinct = [len(np.unique(row)) for row in relevance.cpu().numpy()]
            print(f"| {batch} | {kind} | (distinct relevance values per row: max {max(distinct)}) | | | |")
    if args.step_repeats > 0 and device.type == "cpu":
        print()
        print(f"Whole training step, starter architecture, B = {args.step_batch} (scenes relevance):")
        print()
        print("| B | step | median ms | min ms | median vs ladder (L=2) |")
        print("|---:|---|---:|---:|---:|")
        steps = make_training_steps(args.step_batch, args.seed, clock)
        times = {name: [] for name in steps}
        for run in steps.values():
            run()  # warm-up
        for _ in range(args.step_repeats):
            for name, run in steps.items():
                times[name].append(run())
        base = statistics.median(times["step, " + BASELINE])
        for name, ts in times.items():
            med = statistics.median(ts)
            row = f"{med * 1e3:.1f} | {min(ts) * 1e3:.1f} | {med / base:.3f}x"
            print(f"| {args.step_batch} | {name} | {row} |")
    if hasattr(os, "getloadavg"):
        print(f"\n# load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
