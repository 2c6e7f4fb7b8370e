"""Single-core throughput of the built-in simulator (selected events per second).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        python benchmarks/bench_simulator.py [--events 1000000] [--repeat 3]
            [--baseline /path/to/old/simulator]

Generates the expected process mix of one pseudo-experiment scaled to
--events (95% ztautau) and reports events/s, also per process (200,000 each,
one chunk).  --baseline
loads another copy of the simulator package (e.g. an older version copied
aside) and measures it in the same run, alternating repeats (per process too).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402 (after the thread variables)
import importlib.util  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from workbench.data.schema import EXPECTED_EVENTS, PROCESSES  # noqa: E402
from workbench_builtins.generators.simulator import Simulator  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", help="folder of another simulator package to compare with")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    sims = {"current": Simulator()}
    if args.baseline:
        sims["baseline"] = _load(args.baseline).Simulator()
    total = sum(EXPECTED_EVENTS.values())
    mix = {p: max(1, round(args.events * EXPECTED_EVENTS[p] / total)) for p in PROCESSES}
    rates = {k: [] for k in sims}
    for sim in sims.values():
        sim.generate({p: 100 for p in PROCESSES}, seed=0)  # warm caches/imports
    for r in range(args.repeat):
        for name, sim in sims.items():
            t = time.process_time()
            ev = sim.generate(mix, seed=r)
            rates[name].append(len(ev) / (time.process_time() - t))
    for name, rs in rates.items():
        print(f"{name}: mix {mix}: best {max(rs):,.0f} events/s (CPU time, one thread); runs {[round(x) for x in rs]}")
    per_process = {k: {} for k in sims}
    for p in PROCESSES:
        for name, sim in sims.items():
            t = time.process_time()
            n = sum(len(ch) for ch in sim.iter_chunks({p: 200_000}, seed=7, chunk_size=200_000))
            per_process[name][p] = n / (time.process_time() - t)
        print(f"  {p:8s} " + "  ".join(f"{name} {per_process[name][p]:,.0f}" for name in sims) + " events/s")
    if args.out:
        import json
        from pathlib import Path

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "events": args.events, "mix": mix, "clock": "process CPU time, one thread",
            "best_events_per_s": {k: max(v) for k, v in rates.items()},
            "runs_events_per_s": rates, "per_process_events_per_s": per_process,
        }, indent=1) + "\n")


def _load(folder: str):
    """Import a simulator package from ``folder`` under a private name."""
    spec = importlib.util.spec_from_file_location(
        "_baseline_simulator", f"{folder}/__init__.py", submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    main()
