"""Benchmark: workbench.systematics.apply_systematics vs the reference HiggsML systematics().

Builds N realistic events (the reference samples resampled with per-event jitter of
momenta and angles, primaries rounded to 3 decimals as in the dataset), then runs each
implementation in its own single-threaded subprocess on the same events: tes, jes and
soft_met all non-trivial, thresholds on, DER_ features recomputed.  Reports events/s
(best of --repeat, by wall clock and by the process's CPU time, which a busy
shared machine disturbs less), the ratios, and the peak resident memory of each subprocess
during the timed calls (VmHWM reset after loading; ``ru_maxrss`` where that is not
possible) next to its resident memory just before the first call.  The reference
runs twice: on the dataset's float32 (how the challenge ran it) and on float64
input (the same formulas in double precision, which is what ours computes).

    python benchmarks/bench_systematics.py --events 1000000 --repeat 3 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SINGLE_THREAD = {
    name: "1"
    for name in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
    )
}
os.environ.update(SINGLE_THREAD)

import numpy as np  # noqa: E402  (after the thread settings)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
NPS = {"tes": 1.03, "jes": 0.97, "soft_met": 1.5}
SEED = 31415
IMPLS = ("ours", "reference", "reference64")
LABELS = {
    "ours": "workbench",
    "reference": "HiggsML (float32 input, as the dataset)",
    "reference64": "HiggsML (float64 input)",
}


# -- input ----------------------------------------------------------------------
def build_events(n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` events resampled from the four reference files with per-event jitter."""
    import pyarrow.parquet as pq

    from workbench.data.derived import compute_derived
    from workbench.data.schema import PRIMARY, UNDEFINED

    parts = []
    for fname, label in (
        ("fair_universe_sample.parquet", None),
        ("ttbar_only.parquet", "ttbar"),
        ("diboson_only.parquet", "diboson"),
        ("htautau_only.parquet", "htautau"),
    ):
        path = DATA / fname
        if not path.exists():
            sys.exit(f"reference data file {path} is missing (see tests/data/README.md)")
        table = pq.read_table(path)
        cols = {k: table.column(k).to_numpy() for k in (*PRIMARY, "weights")}
        cols["detailed_labels"] = (
            table.column("detailed_labels").to_numpy().astype(str)
            if label is None
            else np.full(table.num_rows, label)
        )
        parts.append(cols)
    src = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(src["weights"]), n)
    p = {k: src[k][idx].astype(np.float64) for k in PRIMARY}
    n_jets = p["PRI_n_jets"]
    p["PRI_had_pt"] *= rng.uniform(0.9, 1.1, n)
    p["PRI_lep_pt"] *= rng.uniform(0.95, 1.1, n)
    p["PRI_met"] *= rng.uniform(0.7, 1.3, n)
    f_jet = rng.uniform(0.9, 1.1, n)
    p["PRI_jet_all_pt"] *= f_jet
    for slot, present in (("leading", n_jets > 0), ("subleading", n_jets > 1)):
        p[f"PRI_jet_{slot}_pt"] = np.where(present, p[f"PRI_jet_{slot}_pt"] * f_jet, UNDEFINED)
        phi = np.mod(p[f"PRI_jet_{slot}_phi"] + rng.normal(0, 0.1, n) + np.pi, 2 * np.pi) - np.pi
        p[f"PRI_jet_{slot}_phi"] = np.where(present, phi, UNDEFINED)
    for name in ("PRI_lep_phi", "PRI_had_phi", "PRI_met_phi"):
        p[name] = np.mod(p[name] + rng.normal(0, 0.1, n) + np.pi, 2 * np.pi) - np.pi
    p = {k: np.round(v, 3) for k, v in p.items()}
    out = {k: v.astype(np.float32) for k, v in p.items()}
    out.update(compute_derived(p))
    out["weights"] = src["weights"][idx].astype(np.float64)
    out["detailed_labels"] = src["detailed_labels"][idx]
    out["labels"] = (out["detailed_labels"] == "htautau").astype(np.float64)
    return out


# -- workers ----------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0) so that loading does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(impl: str, path: str, repeat: int) -> dict:
    cols = dict(np.load(path, allow_pickle=False))
    if impl == "ours":
        from workbench.data.events import Events
        from workbench.systematics.engine import apply_systematics
        from workbench.systematics.nuisance import NuisanceParameters

        events = Events.from_columns(cols)
        nps = NuisanceParameters(**NPS)

        def run():
            return len(apply_systematics(events, nps, seed=SEED))

    elif impl in ("reference", "reference64"):
        import logging

        import pandas as pd
        from HiggsML.systematics import systematics

        logging.disable(logging.WARNING)
        frame = pd.DataFrame(cols)
        if impl == "reference64":  # same formulas in double precision, as ours
            floats = [c for c in frame.columns if frame[c].dtype == np.float32]
            frame = frame.astype({c: np.float64 for c in floats})

        def run():
            return len(systematics(data_set=frame, seed=SEED, **NPS))

    else:
        raise ValueError(f"unknown implementation {impl!r}")

    n = len(cols["weights"])
    del cols
    import gc

    gc.collect()
    baseline = _rss_mb()
    peak_reset = _reset_peak()
    times, cpu_times, kept = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        kept = run()
        cpu_times.append(time.process_time() - c0)
        times.append(time.perf_counter() - t0)
    peak = _peak_mb()
    best = min(times)
    return {
        "seconds": times,
        "cpu_seconds": cpu_times,
        "best_s": best,
        "best_cpu_s": min(cpu_times),
        "events_per_s": n / best,
        "events_per_cpu_s": n / min(cpu_times),
        "events_out": kept,
        "rss_before_mb": baseline,
        "peak_rss_mb": peak,
        "peak_is_of_calls_only": peak_reset,
    }


def run_worker(impl: str, path: str, repeat: int) -> dict:
    env = {**os.environ, **SINGLE_THREAD}
    cmd = [sys.executable, __file__, "--worker", impl, "--input", path, "--repeat", str(repeat)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{impl} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events to process")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per implementation")
    ap.add_argument("--seed", type=int, default=1, help="seed of the synthetic input")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, args.input, args.repeat)))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "events.npz")
        t0 = time.perf_counter()
        np.savez(path, **build_events(args.events, args.seed))
        build_s = time.perf_counter() - t0
        results = {impl: run_worker(impl, path, args.repeat) for impl in IMPLS}

    ours, ref = results["ours"], results["reference"]
    for impl in IMPLS[1:]:
        if results[impl]["events_out"] != ours["events_out"]:
            print(f"WARNING: survivors differ: ours {ours['events_out']}, "
                  f"{impl} {results[impl]['events_out']}", file=sys.stderr)
    report = {
        "events": args.events,
        "repeat": args.repeat,
        "nps": NPS,
        "threads": 1,
        "input_build_s": build_s,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        **results,
        "speedup": ours["events_per_s"] / ref["events_per_s"],
        "speedup_vs_reference64": ours["events_per_s"] / results["reference64"]["events_per_s"],
        "cpu_speedup": ours["events_per_cpu_s"] / ref["events_per_cpu_s"],
        "cpu_speedup_vs_reference64": (
            ours["events_per_cpu_s"] / results["reference64"]["events_per_cpu_s"]
        ),
    }
    print(f"{args.events:,} events, NPs {NPS}, thresholds + DER, 1 thread, best of {args.repeat}")
    print(f"{'implementation':<42}{'best s':>8}{'events/s':>12}{'best CPU s':>11}"
          f"{'events/CPU s':>14}{'RSS before MB':>15}{'peak RSS MB':>13}")
    for impl in IMPLS:
        r = results[impl]
        print(f"{LABELS[impl]:<42}{r['best_s']:>8.3f}{r['events_per_s']:>12,.0f}"
              f"{r['best_cpu_s']:>11.3f}{r['events_per_cpu_s']:>14,.0f}"
              f"{r['rss_before_mb']:>15.0f}{r['peak_rss_mb']:>13.0f}")
    print(f"speed-up vs reference, wall: {report['speedup']:.2f}x "
          f"(vs its float64 mode: {report['speedup_vs_reference64']:.2f}x); "
          f"CPU time: {report['cpu_speedup']:.2f}x "
          f"(vs its float64 mode: {report['cpu_speedup_vs_reference64']:.2f}x)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
