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


# -- standard tools at their defaults -------------------------------------------------
CABINETRY_SPEC = """
name = "cabinetry-test"
seed = 5
[data]
generator = "simulator"
train = { htautau = 6000, ztautau = 12000, ttbar = 4000, diboson = 1500 }
holdout = { htautau = 30000, ztautau = 400000, ttbar = 40000, diboson = 6000 }
test_pool = { htautau = 0, ztautau = 0, ttbar = 0, diboson = 0 }
[pseudo_experiments]
trials = 1
per_trial = 1
sampling = "generator"
[classifier]
name = "xgboost"
params = { n_estimators = 40, max_depth = 4, n_jobs = 1 }
[template]
name = "pyhf"
params = { bins = 10 }
[interval]
name = "profile-likelihood"
"""


def test_cabinetry_fits_the_exported_workspace_at_its_defaults(tmp_path, capfd):
    """cabinetry, every setting at its default, on a full-luminosity model (gammas of
    width 2e-3 beside a mu of width 0.75): Hesse sigma_mu within 10% of MINOS, no
    Hesse matrix forced positive, the ranking refits converge, the scan runs, the
    pulls/ranking/data-MC plots come out (the data-MC plot with the exported bin
    edges).  Without the conditioning the same workspace gets its Hesse matrix
    forced positive, 30-odd refits stop before convergence and the scan fails (its
    mu_hat - 3 sigma is below the bound at 0)."""
    cabinetry = pytest.importorskip("cabinetry")
    spec = tmp_path / "spec.toml"
    spec.write_text(CABINETRY_SPEC)
    out = tmp_path / "ws.json"
    meta = export_workspace(spec, out, observation="asimov")
    assert meta["conditioning"]["staterror_bounds"], "gammas bounded to their own scale"
    ws = pyhf.Workspace(json.loads(out.read_text()))
    model, data = cabinetry.model_utils.model_and_data(ws)
    capfd.readouterr()
    fit = cabinetry.fit.fit(model, data, minos=[model.config.poi_name])
    poi = model.config.poi_index
    lo, hi = fit.minos_uncertainty[model.config.poi_name]
    minos = 0.5 * (abs(lo) + hi)
    assert abs(fit.uncertainty[poi] / minos - 1) < 0.10, (fit.uncertainty[poi], lo, hi)
    ranking = cabinetry.fit.ranking(model, data, fit_results=fit)
    assert np.all(np.isfinite(ranking.postfit_up)) and np.all(np.isfinite(ranking.postfit_down))
    scan = cabinetry.fit.scan(model, data, model.config.poi_name, n_steps=5)
    assert np.all(np.isfinite(scan.delta_nlls)) and min(scan.delta_nlls) >= -1e-6
    log = capfd.readouterr()
    assert "without convergence" not in log.err + log.out
    assert "forced pos-def" not in log.err + log.out
    figures = tmp_path / "figures"
    cabinetry.visualize.pulls(fit, figure_folder=figures)
    cabinetry.visualize.ranking(ranking, figure_folder=figures)
    config = json.loads(out.with_name("ws.cabinetry.json").read_text())
    cabinetry.configuration.validate(config)
    prediction = cabinetry.model_utils.prediction(model, fit_results=fit)
    plots = cabinetry.visualize.data_mc(prediction, data, config=config, figure_folder=figures)
    assert {p.name for p in figures.iterdir()} >= {"pulls.pdf", "ranking.pdf"}
    assert len(plots) == len(meta["bin_edges"])
    edges = np.asarray(meta["bin_edges"][model.config.channels[0]])
    assert edges[0] < edges[-1] and len(edges) == model.config.channel_nbins[
        model.config.channels[0]] + 1


def test_conditioning_keeps_the_fit_and_says_what_it_did(tmp_path, pipeline, spec_path):
    meta = export_workspace(spec_path, tmp_path / "c.json", observation=1, pipeline=pipeline)
    raw = export_workspace(spec_path, tmp_path / "r.json", observation=1, pipeline=pipeline,
                           condition=False)
    assert raw["conditioning"] is None and meta["conditioning"] is not None
    fit, un = meta["fit"]["workbench"], meta["fit"]["unconditioned"]
    width = un["mu84"] - un["mu16"]
    for key in ("mu_hat", "mu16", "mu84"):
        assert abs(fit[key] - un[key]) < 0.02 * width, (key, fit[key], un[key])
