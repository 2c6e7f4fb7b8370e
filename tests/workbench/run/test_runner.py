"""Runner mechanics with small toy plugins: coverage of a closed-form counting
interval, determinism of the results file, and no loss of finished PEs."""

import json
import types

import numpy as np
import pytest
from toys import Counting, ResampledReference

from workbench import hookimpl
from workbench.data.schema import PROCESSES
from workbench.plugin.registry import build_registry
from workbench.pseudo_experiments import pe_plan
from workbench.run.runner import run
from workbench.spec import parse_spec
from workbench.systematics.nuisance import NuisanceParameters

toy = types.ModuleType("toy")
toy.register_generators = hookimpl(lambda register: register("toy-reference", ResampledReference))
toy.register_intervals = hookimpl(lambda register: register("counting", Counting))


def _spec(tmp_path, trials=40, per_trial=5, interval=None, **pe):
    return parse_spec({
        "name": "toy",
        "seed": 11,
        "data": {
            "generator": "toy-reference",
            "train": {"htautau": 100, "ztautau": 100},
            "holdout": {p: 100000 for p in PROCESSES},
            "test_pool": {p: 100000 for p in PROCESSES},
            "luminosity_fb": 0.05,
        },
        "pseudo_experiments": {"trials": trials, "per_trial": per_trial, "mu_range": [0.5, 3.0],
                               "randomise": [], "fixed": {"soft_met": 1.0}, **pe},
        "interval": interval or {"name": "counting"},
        "output": {"directory": str(tmp_path), "plots": False, "progress": False},
    })


@pytest.fixture(scope="module")
def registry():
    return build_registry(extra_plugins={"toy": toy})


@pytest.mark.parametrize("sampling", ["pool", "generator"])
def test_counting_interval_covers(tmp_path, registry, sampling):
    spec = _spec(tmp_path, sampling=sampling)
    result = run(spec, registry)
    s = result.summary
    assert s["n_pseudo_experiments"] == 200 and s["n_failed"] == 0
    # the closed-form interval must cover at the nominal rate (binomial, 3 sigma)
    assert abs(s["coverage"] - 0.6827) < 3 * np.sqrt(0.6827 * 0.3173 / 200)
    mu = np.array([r["mu_true"] for r in result.records])
    mu_hat = np.array([r["mu_hat"] for r in result.records])
    width = np.array([r["mu84"] - r["mu16"] for r in result.records])
    # unbiased on average: mean pull consistent with zero
    pulls = (mu_hat - mu) / (width / 2)
    assert abs(pulls.mean()) < 4 / np.sqrt(len(pulls))
    assert json.loads((tmp_path / "results.json").read_text())["summary"]["complete"] is True


def test_same_spec_gives_identical_results_file(tmp_path, registry):
    a, b = tmp_path / "a", tmp_path / "b"
    run(_spec(a, trials=3, per_trial=2), registry)
    run(_spec(b, trials=3, per_trial=2), registry)
    assert (a / "results.json").read_bytes() == (b / "results.json").read_bytes()
    assert (a / "timings.json").exists()


def test_plan_uses_priors_and_fixed_values(tmp_path):
    spec = _spec(tmp_path, randomise=["tes", "diboson_scale"], fixed={"soft_met": 2.0})
    plan = pe_plan(spec)
    tes = np.array([p["nuisances_true"]["tes"] for p in plan])
    assert {p["nuisances_true"]["soft_met"] for p in plan} == {2.0}
    assert {p["nuisances_true"]["jes"] for p in plan} == {1.0}
    assert abs(tes.mean() - 1) < 4 * 0.01 / np.sqrt(len(tes)) and 0.005 < tes.std() < 0.015
    mus = {p["trial"]: p["mu_true"] for p in plan}
    assert len(set(mus.values())) == spec.pseudo_experiments.trials
    NuisanceParameters.from_dict(plan[0]["nuisances_true"])  # valid values


def test_interrupted_run_keeps_finished_pseudo_experiments(tmp_path, registry):
    spec = _spec(tmp_path, trials=2, interval={"name": "counting", "params": {"fail_after": 4}})
    with pytest.raises(KeyboardInterrupt):
        run(spec, registry)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["pseudo_experiments"]) == 3
    assert saved["summary"]["complete"] is False


def test_resumed_run_is_byte_identical(tmp_path, registry, monkeypatch):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    run(_spec(ref, trials=3, per_trial=3), registry)
    monkeypatch.setattr(Counting, "interrupt_after", 5)
    with pytest.raises(KeyboardInterrupt):
        run(_spec(cut, trials=3, per_trial=3), registry)
    assert len(json.loads((cut / "results.json").read_text())["pseudo_experiments"]) == 4
    monkeypatch.setattr(Counting, "interrupt_after", -1)
    result = run(_spec(cut, trials=3, per_trial=3), registry, resume=True)
    assert result.timings["resumed_pes"] == 4
    assert (cut / "results.json").read_bytes() == (ref / "results.json").read_bytes()


def test_resume_refuses_another_specs_checkpoint(tmp_path, registry):
    run(_spec(tmp_path, trials=1, per_trial=2), registry)
    with pytest.raises(ValueError, match="belongs to another spec"):
        run(_spec(tmp_path, trials=2, per_trial=2), registry, resume=True)


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_executors_give_identical_results(tmp_path, registry, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    ref, other = tmp_path / "inline", tmp_path / executor
    run(_spec(ref, trials=2, per_trial=3), registry)
    run(_spec(other, trials=2, per_trial=3), registry, executor=executor, workers=2)
    assert (other / "results.json").read_bytes() == (ref / "results.json").read_bytes()
