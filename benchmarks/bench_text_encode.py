"""Text encoding of one short query: open_clip's ``encode_text`` against the truncated shortcut.

Both run on the same model and the same tokens, interleaved run by run (order alternating) so
that machine load hits both alike; the medians are printed as a Markdown table row. On a CPU the
shortcut's bfloat16 copy (what the embedder uses for a query's phrases on CPUs with native
bfloat16, see ``core.embedder.QUERY_BF16_MIN_PARAMS``) runs in the same rotation, with its cosine
to the float32 vector.

    python benchmarks/bench_text_encode.py                       # ViT-B-32-256, random weights, CPU
    python benchmarks/bench_text_encode.py --clock cpu               # 1 thread, CPU time: steadier when busy
    python benchmarks/bench_text_encode.py --device cuda --runs 500
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from core.embedder import Embedder, TruncatedTextEncoder

HEADER = (
    "| benchmark | model | device | tokens run (of context) | encode_text ms (median) "
    "| shortcut ms (median) | speed-up | max abs diff | shortcut in bfloat16 ms | cosine to float32 |"
    "\n|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:ViT-B-32-256", help="model spec (default: %(default)s)")
    parser.add_argument("--query", default="a dog on the beach")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this thread's CPU time (steadier on a shared machine; implies --threads 1)",
    )
    parser.add_argument("--header", action="store_true", help="print the table header too")
    args = parser.parse_args(argv)
    if args.clock == "cpu":
        if args.device != "cpu":
            raise SystemExit("--clock cpu measures CPU work: use it with --device cpu")
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter

    device = torch.device(args.device)
    embedder = Embedder.from_spec(args.model, device=device)
    model = embedder.model
    encoder = TruncatedTextEncoder.for_model(model)
    if encoder is None:
        raise SystemExit(f"the shortcut does not apply to {embedder.identity.arch}")
    tokens = embedder.tokenize([args.query]).to(device)
    amp = embedder._autocast  # the same precision the embedder uses

    def plain() -> torch.Tensor:
        return model.encode_text(tokens)

    def fast() -> torch.Tensor:
        return encoder(tokens)

    variants = {"plain": plain, "fast": fast}
    if device.type == "cpu":
        half_encoder = encoder.cast(torch.bfloat16)
        variants["bf16"] = lambda: half_encoder(tokens)

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (clock() - start) * 1000.0

    times: dict[str, list[float]] = {name: [] for name in variants}
    orders = list(itertools.permutations(variants.items()))
    with torch.inference_mode(), amp():
        diff = (plain().float() - fast().float()).abs().max().item()
        cosine = float("nan")
        if "bf16" in variants:
            a = torch.nn.functional.normalize(fast().float(), dim=-1)
            b = torch.nn.functional.normalize(variants["bf16"]().float(), dim=-1)
            cosine = float((a * b).sum(dim=-1).min())
        for _ in range(args.warmup):
            for fn in variants.values():
                fn()
        for i in range(args.runs):
            for name, fn in orders[i % len(orders)]:
                times[name].append(timed(fn))

    plain_ms = statistics.median(times["plain"])
    fast_ms = statistics.median(times["fast"])
    half = f"{statistics.median(times['bf16']):.2f} | {cosine:.5f}" if "bf16" in times else "- | -"
    where = device.type
    if where == "cpu":
        where += f" ({torch.get_num_threads()} threads, {args.clock} time)"
    elif where == "cuda":
        where += f" ({torch.cuda.get_device_name(device)})"
    if args.header:
        print(HEADER)
    print(
        f"| text encode, 1 query {args.query!r}, {args.runs} runs | {embedder.identity} | {where} "
        f"| {encoder.needed_length(tokens)} of {tokens.shape[1]} | {plain_ms:.2f} | {fast_ms:.2f} "
        f"| {plain_ms / fast_ms:.1f}x | {diff:.1e} | {half} |"
    )


if __name__ == "__main__":
    main()
