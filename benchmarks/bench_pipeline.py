"""Per-PE latency breakdown and pseudo-experiment throughput vs number of workers.

Trains the spec's pipeline once, then evaluates the same pseudo-experiments
with the inline executor (1 worker) and the process pool (2, 4, ... workers up
to the CPU count), checking that every executor gives identical records.

    python benchmarks/bench_pipeline.py specs/quick.toml --pes 8 --out results/bench/pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("spec", nargs="?", default="specs/quick.toml")
    ap.add_argument("--pes", type=int, default=8, help="pseudo-experiments per configuration")
    ap.add_argument("--workers", type=int, nargs="*", default=None)
    ap.add_argument("--out", default="results/bench/pipeline.json")
    args = ap.parse_args()

    from workbench.pipeline import train
    from workbench.pseudo_experiments import pe_plan
    from workbench.run.executors import execute
    from workbench.spec import load_spec

    spec = load_spec(args.spec)
    t0 = time.perf_counter()
    pipeline = train(spec)
    t_train = time.perf_counter() - t0
    tasks = list(enumerate(pe_plan(spec)[: args.pes]))
    cpus = os.cpu_count() or 1
    workers = args.workers or sorted({1, 2, cpus} - {0})
    result = {"spec": args.spec, "pes": len(tasks), "cpus": cpus,
              "training_s": round(t_train, 2), "training": pipeline.timings, "throughput": {}}
    reference = None
    for w in workers:
        executor = "inline" if w == 1 else "processes"
        t0 = time.perf_counter()
        outcomes = sorted(execute(pipeline, tasks, executor, w), key=lambda o: o[0])
        wall = time.perf_counter() - t0
        records = [json.dumps(o[1], sort_keys=True) for o in outcomes]
        if reference is None:
            reference = records
            timings = [o[2] for o in outcomes]
            keys = sorted({k for t in timings for k in t})
            result["latency_median_s"] = {
                k: round(float(np.median([t.get(k, np.nan) for t in timings])), 4) for k in keys}
        result["throughput"][f"{executor}-{w}"] = {
            "wall_s": round(wall, 2), "pe_per_s": round(len(tasks) / wall, 3),
            "identical_to_inline": records == reference}
    print(json.dumps(result, indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
