"""Two processes on one library: one indexes, one searches in a loop. Nothing may be lost.

    python benchmarks/bench_concurrent.py [--photos 10000] [--model starter] [--writers 2]

``--photos`` scene-world photos are rendered (small JPEGs, kept in benchmarks/out between runs),
then ``--writers`` ``index`` commands start at once on a fresh library while a reader process
opens the library and searches in a loop until they finish. Reported: each writer's exit status
and time, the reader's search latency (median, p95, max; and the searches that failed), and
the library afterwards: photos in the catalog, indexed photos, results a search can reach. The run
passes when every writer exited 0 and all ``--photos`` photos are catalogued, indexed and found.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

READER = """
import json, os, sys, time
sys.path.insert(0, {root!r})
from core.library import Library
from core.errors import LadderLensError
stop, out = {stop!r}, {out!r}
times, opens, failures = [], [], 0
queries = ["a red car at night", "two kites over a meadow", "boats", "snow"]
lib = None
while not os.path.exists(stop):
    try:
        if lib is None or time.perf_counter() - opened > 2.0:  # reopened every 2 s, as a new command would
            if lib is not None:
                lib.close()
            started = opened = time.perf_counter()
            lib = Library.open({library!r}, model={model!r})
            if not lib.status().indexed:
                lib.close(); lib = None; time.sleep(0.05); continue
            lib.search("warm up", k=1)
            opens.append(time.perf_counter() - started)
        started = time.perf_counter()
        lib.search(queries[len(times) % len(queries)], k=50)
        times.append(time.perf_counter() - started)
    except LadderLensError:
        failures += 1
        lib = None
json.dump({{"times": times, "opens": opens, "failures": failures}}, open(out, "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=10000)
    parser.add_argument("--model", default="starter")
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=321)
    args = parser.parse_args()

    from trainer.demo_library import write_demo_library

    photos = HERE / "out" / f"concurrent-{args.photos}-{args.seed}"
    write_demo_library(photos, count=args.photos, seed=args.seed, size=(160, 120))
    with tempfile.TemporaryDirectory() as tmp:
        library, stop, out = Path(tmp) / "library", Path(tmp) / "stop", Path(tmp) / "reader.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        index = [sys.executable, str(ROOT / "main.py"), "index", str(photos), "--library", str(library)]
        index += ["--model", args.model, "--no-progress"]
        reader = subprocess.Popen(
            [
                sys.executable,
                "-c",
                READER.format(
                    root=str(ROOT), stop=str(stop), out=str(out), library=str(library), model=args.model
                ),
            ],
            env=env,
        )
        started = time.perf_counter()
        writers = [
            subprocess.Popen(index, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(args.writers)
        ]
        results = []
        for w in writers:
            _, err = w.communicate()
            results.append((w.returncode, time.perf_counter() - started, err.strip().splitlines()[-3:]))
        stop.touch()
        reader.wait()
        read = json.loads(out.read_text())

        from core.library import Library

        with Library.open(library, model=args.model) as lib:
            status = lib.status()
            found = len(lib.search("a photo", k=args.photos + 10).hits)
    times = sorted(read["times"])
    print(f"{args.photos} photos, {args.writers} index commands at once, one reader searching in a loop")
    for i, (code, seconds, tail) in enumerate(results, 1):
        print(f"writer {i}: exit {code} after {seconds:.1f} s" + ("" if code == 0 else f": {tail}"))
    if times:
        p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
        opens = sorted(read["opens"])
        median, open_median = statistics.median(times), statistics.median(opens)
        print(
            f"reader, while indexing: {len(times)} searches, median {1000 * median:.1f} ms, "
            f"p95 {1000 * p95:.1f} ms, max {1000 * times[-1]:.0f} ms; {len(opens)} opens (catching up "
            f"with the writers), median {1000 * open_median:.0f} ms, max {1000 * opens[-1]:.0f} ms; "
            f"{read['failures']} failed"
        )
    print(f"afterwards: {status.photos} photos catalogued, {status.indexed} indexed, {found} found by search")
    ok = all(code == 0 for code, _, _ in results) and status.photos == status.indexed == found == args.photos
    print("PASS: nothing lost" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
