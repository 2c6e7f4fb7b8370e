"""Throughput and memory of the file I/O on a resampled 1M-event file.

Usage: python benchmarks/bench_io.py [--events 1000000] [--dir /tmp/bench_io]

Builds the file by resampling the reference sample (tests/data) with per-mille
jitter on the features (realistic compression), then times
write_parquet / read_parquet / iter_parquet / write_root / read_root /
ParquetSource.generate, each in a fresh subprocess; peak RSS is sampled every 2 ms by a thread
and reported above the RSS at the start of the timed step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import numpy as np
from workbench.data.events import Events
from workbench.data.io import *
from workbench_builtins.generators.files import ParquetSource

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

import threading
peak = [0.0]
def watch():
    while True:
        peak[0] = max(peak[0], rss_mb()); time.sleep(0.002)
threading.Thread(target=watch, daemon=True).start()

def reset():
    # start measuring here: returns (base RSS, start time)
    b = rss_mb(); peak[0] = b
    return b, time.perf_counter()

task, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
base, t0 = reset()
if task == "build":
    ref = read_parquet(sys.argv[4])
    idx = np.random.default_rng(1).integers(0, len(ref), n)
    ev = ref[idx]
    # per-mille jitter on the features so the file compresses like real data
    rng = np.random.default_rng(2)
    ev = ev.with_columns(**{f: ev[f] * (1 + 1e-3 * rng.standard_normal(n)).astype(np.float32)
                           for f in ev.fields if f.startswith(("PRI_", "DER_")) and f != "PRI_n_jets"})
    base, t0 = reset()
    write_parquet(ev, path)
elif task == "read_parquet":
    ev = read_parquet(path); assert len(ev) == n
elif task == "iter_parquet":
    rows = sum(len(e) for e in iter_parquet(path)); assert rows == n
elif task == "write_root":
    ev = read_parquet(path); base, t0 = reset()
    write_root(ev, path.replace(".parquet", ".root"))
elif task == "read_root":
    ev = read_root(path.replace(".parquet", ".root")); assert len(ev) == n
elif task == "generate_10pct":
    ev = ParquetSource(path, metadata=None).generate(
        {p: n // 10 * f for p, f in (("ztautau", 1), ("htautau", 0), ("ttbar", 0), ("diboson", 0))}, 1)
dt = time.perf_counter() - t0
time.sleep(0.01)
print(json.dumps({"task": task, "seconds": dt, "peak_rss_over_base_mb": peak[0] - base}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/tmp/bench_io")
    args = ap.parse_args()
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    path = str(out / f"bench_{args.events}.parquet")
    ref = str(ROOT / "tests" / "data" / "fair_universe_sample.parquet")
    print(f"{args.events} events -> {path}")
    for task in ("build", "read_parquet", "iter_parquet", "write_root", "read_root",
                 "generate_10pct"):
        cmd = [sys.executable, "-c", CHILD, task, path, str(args.events), ref]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                        text=True).stdout.strip().splitlines()[-1])
        size = Path(path if "root" not in task else path.replace(".parquet", ".root"))
        mb = size.stat().st_size / 2**20 if size.exists() else float("nan")
        rate = args.events / res["seconds"] / 1e6
        print(f"{task:15s} {res['seconds']:7.2f} s  {rate:6.2f} M events/s  "
              f"peak RSS +{res['peak_rss_over_base_mb']:7.0f} MB  (file {mb:.0f} MB)")


if __name__ == "__main__":
    main()
