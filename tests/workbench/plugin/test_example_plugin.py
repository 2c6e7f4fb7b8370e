"""The third-party plugin experience, end to end: install the example package from
examples/ with pip, see it listed by ``workbench plugins``, and run a spec that uses
its strategy through the command line."""

from __future__ import annotations

import importlib.metadata as md
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "workbench-example-plugin"
DIST = "workbench-example-plugin"


def _workbench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def _example_version() -> str:
    import tomllib

    return tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module")
def installed():
    """pip-install the example into this interpreter's environment unless it is there."""
    try:
        md.distribution(DIST)
    except md.PackageNotFoundError:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "-e", str(EXAMPLE)],
            capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, f"pip install of {EXAMPLE} failed:\n{proc.stderr[-3000:]}"
    return _example_version()


def test_plugins_lists_the_example_with_its_distribution(installed):
    proc = _workbench("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    entry = next((p for p in listing["plugins"] if p["name"] == "example"), None)
    assert entry is not None, f"plugin 'example' not listed: {[p['name'] for p in listing['plugins']]}"
    assert "error" not in entry, entry.get("error")
    assert entry["distribution"] == DIST
    assert entry["version"] == installed
    assert entry["strategies"] == {"interval": ["cut-and-count"]}


SPEC = """
name = "example-cli"
seed = 5

[data]
generator = "simulator"
train = {{ htautau = 3000, ztautau = 6000, ttbar = 1500, diboson = 500 }}
holdout = {{ htautau = 3000, ztautau = 15000, ttbar = 2000, diboson = 500 }}
test_pool = {{ htautau = 3000, ztautau = 15000, ttbar = 2000, diboson = 500 }}
luminosity_fb = 0.01

[pseudo_experiments]
trials = 3
per_trial = 4
randomise = ["ttbar_scale", "diboson_scale", "bkg_scale"]

[classifier]
name = "xgboost"
params = {{ n_estimators = 20, max_depth = 3 }}

[interval]
name = "cut-and-count"
params = {{ threshold = {threshold} }}

[output]
directory = "{out}"
plots = false
workspace = false
progress = false
"""


def test_cli_run_uses_the_example_strategy(installed, tmp_path):
    spec = tmp_path / "example.toml"
    out = tmp_path / "out"
    spec.write_text(SPEC.format(threshold=0.5, out=out.as_posix()))
    proc = _workbench("run", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["spec"]["interval"] == {"name": "cut-and-count", "params": {"threshold": 0.5}}
    records = results["pseudo_experiments"]
    assert len(records) == 12 and results["summary"]["n_failed"] == 0
    for r in records:
        # the count is the number of events above the cut, never more than the PE holds
        assert r["info"]["threshold"] == 0.5
        assert 0 < r["info"]["n"] < r["n_events"]
        assert r["mu16"] <= r["mu_hat"] <= r["mu84"]
    # the score the CLI prints agrees with re-scoring the file
    proc = _workbench("score", str(out / "results.json"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["coverage"] == pytest.approx(results["summary"]["coverage"])


def test_cli_rejects_unknown_parameter_of_the_example(installed, tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(SPEC.format(threshold=0.5, out=(tmp_path / "o").as_posix())
                    .replace("threshold = 0.5", "treshold = 0.5"))
    proc = _workbench("run", str(spec), cwd=tmp_path)
    assert proc.returncode == 2
    assert "treshold" in proc.stderr and "threshold" in proc.stderr


def test_example_package_own_tests_pass(installed):
    """The example's own test suite, run as its author would run it (from its folder)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
