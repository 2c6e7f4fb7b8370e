"""Single-core throughput of the built-in simulator (selected events per second).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        python benchmarks/bench_simulator.py [--events 1000000] [--repeat 3]

Generates the expected process mix of one pseudo-experiment scaled to
--events (95% ztautau) and reports events/s, also per process.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import time

from workbench.schema import EXPECTED_EVENTS, PROCESSES
from workbench_builtins.simulator import Simulator


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    sim = Simulator()
    total = sum(EXPECTED_EVENTS.values())
    mix = {p: max(1, round(args.events * EXPECTED_EVENTS[p] / total)) for p in PROCESSES}
    sim.generate({p: 100 for p in PROCESSES}, seed=0)  # warm caches/imports
    rates = []
    for r in range(args.repeat):
        t = time.process_time()
        ev = sim.generate(mix, seed=r)
        rates.append(len(ev) / (time.process_time() - t))
    print(f"mix {mix}: best {max(rates):,.0f} events/s (CPU time, one thread); runs {[round(x) for x in rates]}")
    for p in PROCESSES:
        t = time.process_time()
        n = sum(len(ch) for ch in sim.iter_chunks({p: 200_000}, seed=7, chunk_size=200_000))
        print(f"  {p:8s} {n / (time.process_time() - t):,.0f} events/s")


if __name__ == "__main__":
    main()
