"""export_workspace: a trained spec's workspace validates, is sorted and digested,
round-trips through the ``pyhf`` CLI and fits to the workbench's mu_hat."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyhf
import pytest

from workbench.cli import build_parser
from workbench.outputs.workspace import export_workspace
from workbench.pipeline import train
from workbench.pseudo_experiments import pe_plan
from workbench.spec import SpecError, load_spec

SPEC = """
name = "export-test"
seed = 7
[data]
generator = "simulator"
train = {{ htautau = 3000, ztautau = 6000, ttbar = 2000, diboson = 800 }}
holdout = {{ htautau = 4000, ztautau = 12000, ttbar = 3000, diboson = 1000 }}
test_pool = {{ htautau = 4000, ztautau = 12000, ttbar = 3000, diboson = 1000 }}
[pseudo_experiments]
trials = 2
per_trial = 2
mu_range = [1.0, 3.0]
[classifier]
name = "xgboost"
params = {{ n_estimators = 25, max_depth = 3, n_jobs = 1 }}
[template]
name = "{template}"
params = {{ bins = 5, categories = "njets", norm_shape_split = true }}
[interval]
name = "profile-likelihood"
"""


def _pyhf_cli() -> list[str]:
    exe = shutil.which("pyhf") or str(Path(sys.executable).with_name("pyhf"))
    return [exe]


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "spec.toml"
    path.write_text(SPEC.format(template="pyhf"))
    return path


@pytest.fixture(scope="module")
def pipeline(spec_path):
    return train(load_spec(spec_path))


@pytest.fixture(scope="module")
def exported(spec_path, pipeline, tmp_path_factory):
    out = tmp_path_factory.mktemp("ws") / "pe1.json"
    meta = export_workspace(spec_path, out, observation=1, pipeline=pipeline, plots=True)
    return out, meta


def test_workspace_is_valid_sorted_and_digested(exported, pipeline, spec_path):
    out, meta = exported
    text = out.read_text()
    spec = json.loads(text)
    ws = pyhf.Workspace(spec)
    model = ws.model()
    assert model.config.channels == ["score_0j", "score_1j", "score_2j"]
    assert text == json.dumps(json.loads(json.dumps(pyhf.Workspace.sorted(ws))), indent=1,
                              sort_keys=True) + "\n"
    assert meta["digest"]["sha256"] == pyhf.utils.digest(spec)
    side = json.loads(out.with_name("pe1.meta.json").read_text())
    assert side["digest"] == meta["digest"]
    # the observation is the PE of the plan, binned like the templates
    task = pe_plan(load_spec(spec_path))[1]
    assert side["observation"]["mu_true"] == task["mu_true"]
    assert sum(sum(o["data"]) for o in spec["observations"]) > 0
    for name in ("score_0j_stack.png", "score_1j_systematics.png", "pulls.png",
                 "correlations.png"):
        assert (out.parent / f"pe1_{name}").stat().st_size > 0


def test_round_trip_through_the_pyhf_cli(exported):
    out, meta = exported
    cli = _pyhf_cli()
    inspect = subprocess.run([*cli, "inspect", str(out)], capture_output=True, text=True,
                             check=True)
    assert "score_2j" in inspect.stdout and "mu" in inspect.stdout
    digest = subprocess.run([*cli, "digest", str(out)], capture_output=True, text=True,
                            check=True)
    assert digest.stdout.strip() == f"sha256:{meta['digest']['sha256']}"
    fit = subprocess.run([*cli, "fit", "--value", "--optimizer", "minuit", str(out)],
                         capture_output=True, text=True, check=True)
    cli_fit = json.loads(fit.stdout)
    mu_cli = cli_fit["mle_parameters"]["mu"][0]
    # same minimum: equal twice NLL, and mu equal to a small fraction of its
    # uncertainty (this small-sample PE has a flat likelihood, sigma_mu ~ 3)
    wb = meta["fit"]["workbench"]
    tol = 2e-3 * max(1.0, (wb["mu84"] - wb["mu16"]) / 2)
    assert mu_cli == pytest.approx(wb["mu_hat"], abs=tol)
    assert meta["fit"]["mu_hat_difference"] < tol  # pyhf.infer.mle.fit, in process
    assert cli_fit["twice_nll"] == pytest.approx(meta["fit"]["pyhf"]["twice_nll"], abs=1e-6)
    assert meta["fit"]["workbench"]["mu_hat"] > 0.05  # not a trivial fit at the bound


def test_same_spec_same_bytes_and_asimov(spec_path, pipeline, exported, tmp_path):
    out, _ = exported
    again = tmp_path / "again.json"
    export_workspace(spec_path, again, observation=1, pipeline=pipeline, check=False)
    assert again.read_bytes() == out.read_bytes()
    asimov = tmp_path / "asimov.json"
    meta = export_workspace(spec_path, asimov, observation="asimov", pipeline=pipeline)
    assert meta["fit"]["workbench"]["mu_hat"] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(SpecError, match="not in the plan"):
        export_workspace(spec_path, tmp_path / "x.json", observation=99, pipeline=pipeline)


def test_cli_parser_and_polynomial_spec(tmp_path):
    parser = build_parser()
    args = parser.parse_args(["export-workspace", "s.toml", "-o", "w.json", "--pe", "3"])
    assert args.pe == 3 and args.output == "w.json" and callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["export-workspace", "s.toml", "-o", "w.json", "--pe", "3", "--asimov"])
    # the polynomial strategy exports the pyhf approximation of its model and also
    # reports its own likelihood's fit
    path = tmp_path / "poly.toml"
    path.write_text(SPEC.format(template="polynomial"))
    meta = export_workspace(path, tmp_path / "poly.json", observation="asimov")
    assert meta["fit"]["mu_hat_difference"] < 1e-3
    assert meta["fit"]["pipeline"]["engine"] == "likelihood:polynomial"
    assert np.isclose(meta["fit"]["pipeline"]["mu_hat"], 1.0, atol=5e-3)
