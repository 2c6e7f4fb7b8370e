"""Reproducibility of a real run (built-in simulator, xgboost, pyhf templates, profile
likelihood): the same spec run twice, in separate processes and on different
executors, writes byte-identical results.json files."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

SPEC = """
name = "repro"
seed = 11
[data]
generator = "simulator"
train = { htautau = 3000, ztautau = 6000, ttbar = 2000, diboson = 800 }
holdout = { htautau = 4000, ztautau = 12000, ttbar = 3000, diboson = 1000 }
test_pool = { htautau = 4000, ztautau = 12000, ttbar = 3000, diboson = 1000 }
luminosity_fb = 0.1
[pseudo_experiments]
trials = 2
per_trial = 2
randomise = ["tes", "jes", "soft_met", "ttbar_scale", "diboson_scale", "bkg_scale"]
[classifier]
name = "xgboost"
params = { n_estimators = 20, max_depth = 3 }
[template]
name = "pyhf"
params = { bins = 6 }
[interval]
name = "profile-likelihood"
[output]
plots = false
"""


def _run(spec: Path, out: Path, *extra: str) -> bytes:
    proc = subprocess.run([sys.executable, "-m", "workbench", "run", str(spec), "-o", str(out),
                           "--no-progress", *extra], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (out / "results.json").read_bytes()


def test_same_spec_same_results_file_across_processes_and_executors(tmp_path):
    spec = tmp_path / "repro.toml"
    spec.write_text(SPEC)
    a = _run(spec, tmp_path / "a")
    b = _run(spec, tmp_path / "b", "--executor", "processes", "--workers", "2")
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()
    assert b'"n_failed": 0' in a
