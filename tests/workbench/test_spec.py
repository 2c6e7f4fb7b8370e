"""Spec validation: unknown keys and bad values name the key and the valid choices."""

from pathlib import Path

import pytest

from workbench.spec import SpecError, load_spec, parse_spec
from workbench.systematics.nuisance import NP_NAMES

SPECS = Path(__file__).resolve().parents[2] / "specs"

MINIMAL = {
    "seed": 1,
    "data": {
        "generator": "simulator",
        "train": {"htautau": 10},
        "holdout": {"htautau": 10},
        "test_pool": {"htautau": 10},
    },
    "interval": {"name": "profile-likelihood"},
}


def _with(**changes):
    import copy

    raw = copy.deepcopy(MINIMAL)
    for dotted, value in changes.items():
        table = raw
        *parents, last = dotted.split("__")
        for key in parents:
            table = table.setdefault(key, {})
        table[last] = value
    return raw


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_specs_validate(path):
    spec = load_spec(path)
    assert spec.seed >= 0
    assert spec.as_dict()["name"] == spec.name


def test_defaults():
    spec = parse_spec(MINIMAL)
    assert spec.pseudo_experiments.randomise == NP_NAMES
    assert spec.pseudo_experiments.mu_range == (0.1, 3.0)
    assert spec.scoring.eps == 1e-3
    assert spec.data.train == {"htautau": 10, "ztautau": 0, "ttbar": 0, "diboson": 0}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"sede": 3}, r"unknown key\(s\) 'sede'; valid keys: .*seed"),
        ({"data__train": {"higgs": 3}}, r"unknown key\(s\) 'higgs' in \[data.train\]; valid keys: diboson, htautau"),
        ({"data__train": {"htautau": -5}}, r"data.train.htautau must be >= -1"),
        ({"pseudo_experiments": {"trials": 0}}, r"pseudo_experiments.trials must be positive"),
        ({"pseudo_experiments": {"mu_range": [3, 1]}}, r"mu_range must be \[low, high\]"),
        ({"pseudo_experiments": {"randomise": ["tes", "xes"]}}, r"unknown nuisance parameter\(s\) \['xes'\]; valid: tes"),
        ({"pseudo_experiments": {"randomise": [], "fixed": {"tes": 1.5}}}, r"outside its allowed range \[0.9, 1.1\]"),
        ({"pseudo_experiments": {"randomise": ["tes"], "fixed": {"tes": 1.0}}}, r"both randomised and fixed"),
        ({"priors": {"tes": {"scale": 0.02, "hi": 1.1}}}, r"unknown key\(s\) 'hi' in \[priors.tes\]"),
        ({"priors": {"tes": {"low": 0.5}}}, r"exceeds the allowed"),
        ({"interval": {"name": "x", "parms": {}}}, r"unknown key\(s\) 'parms' in \[interval\]; valid keys: name, params"),
        ({"seed": "one"}, r"seed must be an integer"),
        ({"scoring": {"eps": True}}, r"scoring.eps must be an integer or a number, got True"),
    ],
)
def test_bad_specs_name_the_key(changes, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(_with(**changes))


def test_missing_required_key():
    raw = _with()
    del raw["seed"]
    with pytest.raises(SpecError, match="missing required key 'seed'"):
        parse_spec(raw)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = [\n")
    with pytest.raises(SpecError, match="bad.toml.*not valid TOML"):
        load_spec(bad)


def test_overrides_apply_dotted_keys():
    spec = load_spec(SPECS / "quick.toml", {"pseudo_experiments.trials": 2, "seed": 7})
    assert spec.pseudo_experiments.trials == 2
    assert spec.seed == 7


def test_minus_one_cannot_be_mixed_with_counts_of_the_same_process():
    raw = _with(data__train={"htautau": -1}, data__holdout={"htautau": 3}, data__test_pool={})
    with pytest.raises(SpecError, match=r"^data\.train\.htautau = -1, data\.holdout\.htautau = "
                                        r"3: -1 \(all events\) cannot be mixed"):
        parse_spec(raw)
    parse_spec(_with(data__train={"htautau": -1}, data__holdout={}, data__test_pool={}))


def test_scheduler_needs_the_dask_executor():
    with pytest.raises(SpecError, match="execution.scheduler is set .* but execution.executor "
                                        "is 'processes'"):
        parse_spec(_with(execution={"executor": "processes", "scheduler": "tcp://h:1"}))
    parse_spec(_with(execution={"executor": "dask", "scheduler": "tcp://h:1"}))


def test_set_into_a_value_that_is_not_a_table_names_the_key(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text((SPECS / "quick.toml").read_text())
    with pytest.raises(SpecError, match=r"^--set seed\.x: 'seed' is 20241, not a table, so it "
                                        r"has no key 'x'; set seed itself$"):
        load_spec(path, {"seed.x": 3})
    with pytest.raises(SpecError, match="must be a dotted path"):
        load_spec(path, {"data..train": 3})


def test_resume_digest_ignores_output_settings_but_not_the_experiment():
    from workbench.spec import resume_digest, spec_digest

    base = parse_spec(MINIMAL)
    quiet = parse_spec(_with(output={"plots": False, "progress": False, "directory": "x"}))
    assert resume_digest(base) == resume_digest(quiet)
    assert spec_digest(base) != spec_digest(quiet)  # results.json echoes output.plots
    assert resume_digest(base) != resume_digest(parse_spec(_with(seed=2)))
