"""The command line: exit codes, error messages naming the fault, round trips."""

import json

import numpy as np
import pytest

from workbench.cli import main
from workbench.data.io.parquet import read_parquet
from workbench.scoring import score


def test_plugins_json_lists_builtins(capsys):
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_name = {p["name"]: p for p in listing["plugins"]}
    assert by_name["simulator"]["distribution"] == "fair-workbench"
    assert "simulator" in by_name["simulator"]["strategies"]["generator"]
    assert "profile-likelihood" in by_name["profile-likelihood"]["strategies"]["interval"]


def test_score_recomputes_a_results_file(tmp_path, capsys):
    rng = np.random.default_rng(3)
    mu = rng.uniform(0.1, 3, 50)
    rows = [{"mu_true": m, "mu_hat": m + d, "mu16": m + d - 0.3, "mu84": m + d + 0.3}
            for m, d in zip(mu, rng.normal(0, 0.3, 50))]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"pseudo_experiments": rows}))
    assert main(["score", str(path), "--eps", "0.01"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = score([r["mu_true"] for r in rows], [r["mu16"] for r in rows],
                     [r["mu84"] for r in rows], [r["mu_hat"] for r in rows], eps=0.01)
    assert out["score"] == pytest.approx(expected.score)
    assert out["eps"] == 0.01


def test_errors_exit_2_and_name_the_fault(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('seed = 1\ninterval = "profile-likelihood"\n[data]\ngenerator = "simulator"\n'
                   'train = {}\nholdout = {}\ntest_pool = {}\nbogus = 1\n')
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) 'bogus' in [data]" in err and "valid keys:" in err
    assert main(["score", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["simulate", "--out", str(tmp_path / "x.parquet"), "--generator", "nope"]) == 2
    assert "unknown generator 'nope'; valid generators:" in capsys.readouterr().err


def test_simulate_writes_a_readable_file(tmp_path):
    out = tmp_path / "sim.parquet"
    assert main(["simulate", "--out", str(out), "--htautau", "300", "--ztautau", "700",
                 "--ttbar", "0", "--diboson", "0", "--seed", "5"]) == 0
    events = read_parquet(out)
    assert len(events) == 1000
    sums = events.sum_weights(by_process=True)
    assert sums["htautau"] == pytest.approx(1015.0, rel=1e-5)
    assert sums["ztautau"] == pytest.approx(1_002_395.0, rel=1e-5)
