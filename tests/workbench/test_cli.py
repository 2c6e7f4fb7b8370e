"""The command line: exit codes, error messages naming the fault, round trips."""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "run"))  # run_toys: the runner tests' toys
from run_toys import SlowCounting, spec_dict, toy_registry, write_spec  # noqa: E402
from toys import REFERENCE_SAMPLE, Counting  # noqa: E402

import workbench.plugin.registry as registry_module  # noqa: E402
from workbench.cli import main  # noqa: E402
from workbench.data.io import write_parquet, write_root  # noqa: E402
from workbench.data.io.parquet import read_parquet  # noqa: E402
from workbench.run.checkpoint import CHECKPOINT  # noqa: E402
from workbench.run.folder import RunLock  # noqa: E402
from workbench.scoring import score  # noqa: E402


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


# -- the error policy: every anticipated error is one line and status 2 -----------------
SMALL = {"train": {"htautau": 50, "ztautau": 50},
         "holdout": {"htautau": 50, "ztautau": 100, "ttbar": 5, "diboson": 1},
         "test_pool": {"htautau": 50, "ztautau": 100, "ttbar": 5, "diboson": 1}}


@pytest.fixture(scope="module")
def _toy_registry():
    return toy_registry()


@pytest.fixture
def toys(_toy_registry, monkeypatch):
    """The CLI sees the toy plugins (and the built-ins) through get_registry()."""
    monkeypatch.setattr(registry_module, "_CACHE", _toy_registry)
    return _toy_registry


def _spec_file(tmp_path, name="spec.toml", **kw) -> Path:
    return write_spec(tmp_path / name, spec_dict(tmp_path / "out", **kw))


def _file_spec(tmp_path, generator: str, path: Path) -> Path:
    raw = spec_dict(tmp_path / "out", 1, 2)
    raw["data"] = {"generator": generator, "params": {"path": str(path)}, **SMALL}
    return write_spec(tmp_path / "spec.toml", raw)


def _fails(argv, capsys, code=2) -> str:
    """Run the CLI; it must return ``code`` and end stderr with one error line: that line."""
    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_corrupt_parquet_page_is_one_line(tmp_path, capsys, toys, reference_sample):
    path = write_parquet(reference_sample, tmp_path / "data.parquet", compression="none")
    column = pq_column(path)
    raw = bytearray(path.read_bytes())
    raw[column.data_page_offset + column.total_compressed_size - 20] ^= 0x10
    path.write_bytes(bytes(raw))
    line = _fails(["run", _file_spec(tmp_path, "parquet", path)], capsys)
    assert line == (f"workbench: error: {path}: corrupt or truncated parquet data near row 0 "
                    "(could not verify page integrity, CRC checksum verification failed for "
                    "page_ordinal 0)")


def pq_column(path):
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.row_group(0).column(0)


def test_truncated_root_file_is_one_line(tmp_path, capsys, toys, reference_sample):
    path = write_root(reference_sample, tmp_path / "data.root")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    line = _fails(["run", _file_spec(tmp_path, "root", path)], capsys)
    assert line.startswith(f"workbench: error: {path}: ")
    assert "truncated" in line or "not a readable ROOT file" in line


def test_zero_row_file_is_one_line(tmp_path, capsys, toys, reference_sample):
    path = write_parquet(reference_sample[:0], tmp_path / "empty.parquet")
    line = _fails(["run", _file_spec(tmp_path, "parquet", path)], capsys)
    assert line == (
        "workbench: error: generator 'parquet' cannot provide the spec's data (htautau 150, "
        f"ztautau 250, ttbar 10, diboson 2): parquet source {path}: counts['htautau']=150 but "
        "the file has only 0 htautau events")


def test_a_data_set_too_small_for_its_spec_is_an_error_before_training(tmp_path, capsys,
                                                                       toys):
    raw = spec_dict(tmp_path / "out", 1, 2, interval={"name": "slow-counting"})
    raw["data"] = {"generator": "parquet", "params": {"path": str(REFERENCE_SAMPLE)}, **SMALL,
                   "train": {"ztautau": 400}}
    SlowCounting.fits = 0
    line = _fails(["run", write_spec(tmp_path / "spec.toml", raw)], capsys)
    assert line == (
        "workbench: error: generator 'parquet' cannot provide the spec's data (htautau 100, "
        f"ztautau 600, ttbar 10, diboson 2): parquet source {REFERENCE_SAMPLE}: "
        "counts['ztautau']=600 but the file has only 309 ztautau events")
    assert SlowCounting.fits == 0


def test_minus_one_mixed_with_counts_is_a_spec_error(tmp_path, capsys):
    raw = spec_dict(tmp_path / "out", 1, 2)
    raw["data"]["train"] = {"htautau": -1}
    raw["data"]["holdout"]["htautau"] = 5
    spec = write_spec(tmp_path / "spec.toml", raw)
    line = _fails(["run", spec], capsys)
    assert line == (
        f"workbench: error: {spec}: data.train.htautau = -1, data.holdout.htautau = 5, "
        "data.test_pool.htautau = 5000: -1 (all events) cannot be mixed with other counts of "
        "the same process; give explicit counts in every part, or -1 in one part and 0 "
        "elsewhere")


def test_simulate_into_a_missing_folder_is_one_line(tmp_path, capsys):
    out = tmp_path / "missing_dir" / "x.parquet"
    line = _fails(["simulate", "--out", out, "--htautau", "10"], capsys)
    assert line == (f"workbench: error: --out {out}: folder {out.parent} does not exist; "
                    "create it first")


def test_set_below_a_value_is_one_line(tmp_path, capsys):
    line = _fails(["run", _spec_file(tmp_path), "--set", "seed.x=3"], capsys)
    assert line == ("workbench: error: --set seed.x: 'seed' is 11, not a table, so it has no "
                    "key 'x'; set seed itself")


def test_resume_with_a_modified_spec_is_one_line(tmp_path, capsys, toys):
    spec = _spec_file(tmp_path, trials=1, per_trial=2)
    assert main(["run", str(spec), "-q"]) == 0
    capsys.readouterr()
    line = _fails(["run", spec, "--resume", "--set", "seed=12"], capsys)
    assert line.startswith(f"workbench: error: {tmp_path / 'out' / CHECKPOINT} belongs to "
                           "another spec (digest ")
    assert line.endswith("): resume it with the spec that wrote it, or start again with "
                         "--overwrite (or use another output folder)")


def test_corrupt_checkpoint_header_is_one_line(tmp_path, capsys, toys):
    spec = _spec_file(tmp_path, trials=1, per_trial=2)
    assert main(["run", str(spec), "-q"]) == 0
    ckpt = tmp_path / "out" / CHECKPOINT
    ckpt.write_bytes(b'{"resume_dig' + ckpt.read_bytes()[12:].split(b"\n", 1)[1])
    capsys.readouterr()
    line = _fails(["run", spec, "--resume"], capsys)
    assert line.startswith(f"workbench: error: {ckpt}: the header line is corrupt (")
    assert line.endswith("so it is not known which experiment wrote it; start again with "
                         "--overwrite (or use another output folder)")
    line = _fails(["run", spec], capsys)
    assert line == (f"workbench: error: output folder {tmp_path / 'out'} holds an earlier run's "
                    f"checkpoint (with a corrupt header) ({CHECKPOINT}); continue it with "
                    "--resume, start again with --overwrite, or choose another folder with -o")
    assert main(["run", str(spec), "--overwrite", "-q"]) == 0


def test_ctrl_c_is_130_after_the_partial_results_are_written(tmp_path, capsys, toys,
                                                             monkeypatch):
    spec = _spec_file(tmp_path, trials=2, per_trial=3)
    monkeypatch.setattr(Counting, "interrupt_after", 4)
    line = _fails(["run", spec], capsys, code=130)
    assert line == (f"workbench: interrupted; 3 of 6 pseudo-experiments are saved in "
                    f"{tmp_path / 'out'}; continue with --resume")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(saved["pseudo_experiments"]) == 3 and saved["summary"]["complete"] is False
    monkeypatch.setattr(Counting, "interrupt_after", -1)
    line = _fails(["run", spec], capsys)
    assert line == (f"workbench: error: output folder {tmp_path / 'out'} holds 3 finished "
                    f"pseudo-experiments of an earlier run ({CHECKPOINT}); continue it with "
                    "--resume, start again with --overwrite, or choose another folder with -o")
    assert main(["run", str(spec), "--resume", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["resumed_pes"] == 3 and out["summary"]["complete"] is True


def test_two_runs_into_one_folder(tmp_path, capsys, toys):
    spec = _spec_file(tmp_path, trials=1, per_trial=2)
    (tmp_path / "out").mkdir()
    with RunLock(tmp_path / "out"):
        line = _fails(["run", spec], capsys)
    assert line == (f"workbench: error: output folder {tmp_path / 'out'} is in use by another "
                    f"workbench run (pid {os.getpid()}); wait for it to finish, or choose "
                    "another folder with -o")


def test_unreachable_scheduler_is_one_line_within_10_s(tmp_path, capsys, toys, monkeypatch):
    pytest.importorskip("distributed")
    from workbench.run import executors

    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 2.0)
    SlowCounting.fits = 0
    spec = _spec_file(tmp_path, trials=1, per_trial=2, interval={"name": "slow-counting"})
    t0 = time.monotonic()
    line = _fails(["run", spec, "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"],
                  capsys)
    assert time.monotonic() - t0 < 10 and SlowCounting.fits == 0
    assert line.startswith("workbench: error: cannot reach the dask scheduler tcp://127.0.0.1:9 "
                           "(gave up after ")
    assert line.endswith("start it (dask scheduler) or fix --scheduler / execution.scheduler")


def test_scheduler_without_the_dask_executor_is_one_line(tmp_path, capsys):
    line = _fails(["run", _spec_file(tmp_path), "--scheduler", "tcp://host:8786"], capsys)
    assert line == ("workbench: error: --scheduler tcp://host:8786 needs the dask executor, but "
                    "the executor is 'inline': add --executor dask, or drop --scheduler")
    raw = spec_dict(tmp_path / "out", execution={"scheduler": "tcp://h:1"})
    spec = write_spec(tmp_path / "s.toml", raw)
    line = _fails(["run", spec], capsys)
    assert line == (f"workbench: error: {spec}: execution.scheduler is set ('tcp://h:1') but "
                    "execution.executor is 'inline'; a scheduler is only used by executor = "
                    '"dask"')


def test_labels_of_half_are_one_line(tmp_path, capsys, toys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(REFERENCE_SAMPLE)
    labels = table.column("labels").to_numpy().copy()
    labels[7] = 0.5
    table = table.set_column(table.schema.get_field_index("labels"), "labels",
                             pa.array(labels, pa.float32()))
    path = tmp_path / "half.parquet"
    pq.write_table(table, path)
    line = _fails(["run", _file_spec(tmp_path, "parquet", path)], capsys)
    assert line == (f"workbench: error: {path}: column 'labels' must hold exactly 0 or 1, but "
                    "1 row(s) do not, first row 7 = 0.5")


def test_pool_sampling_from_an_empty_test_pool_is_an_error_before_training(tmp_path, capsys,
                                                                           toys):
    raw = spec_dict(tmp_path / "out", 1, 2, interval={"name": "slow-counting"})
    raw["data"]["test_pool"] = {}
    SlowCounting.fits = 0
    line = _fails(["run", write_spec(tmp_path / "spec.toml", raw)], capsys)
    assert line == (
        "workbench: error: pseudo_experiments.sampling = 'pool' draws PEs from data.test_pool, "
        "which is empty (generator 'toy-reference'); give data.test_pool events, or use "
        "pseudo_experiments.sampling = 'generator'")
    assert SlowCounting.fits == 0


def test_too_small_pes_are_failed_records_naming_the_sampling_and_pool(tmp_path, capsys, toys):
    spec = _spec_file(tmp_path, trials=1, per_trial=2,
                      interval={"name": "slow-counting", "params": {"min_events": 10**7}})
    assert main(["run", str(spec), "-q"]) == 1  # some PEs failed
    records = json.loads((tmp_path / "out" / "results.json").read_text())["pseudo_experiments"]
    for r in records:
        assert r["error"].startswith("ValueError: needs at least 10000000 events, got ")
        assert r["error"].endswith("events, sampling 'pool' from a test pool of 20000 events)")
        assert "mu16" not in r


def test_degenerate_templates_and_fits_at_bounds_are_flagged(tmp_path, capsys, toys):
    raw = spec_dict(tmp_path / "out", 1, 3,
                    interval={"name": "slow-counting", "params": {"bounds": True}},
                    classifier={"name": "had-pt"}, template={"name": "flat"})
    assert main(["run", str(write_spec(tmp_path / "spec.toml", raw))]) == 0
    captured = capsys.readouterr()
    summary = json.loads((tmp_path / "out" / "results.json").read_text())["summary"]
    assert summary["n_at_bounds"] == 3 and summary["n_degenerate"] == 3
    assert "3 of 3 intervals come from degenerate templates" in captured.err
    assert "3 of 3 intervals end at a bound of the fit's parameter range" in captured.err
    assert "degenerate templates: the signal template is zero in every bin" in captured.err
    assert '"n_degenerate": 3' in captured.out
    assert main(["report", str(tmp_path / "out")]) == 0
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count('class="bad warning"') == 2


# -- score: every bad input one line, valid JSON out -------------------------------------
def _results(tmp_path, rows, name="results.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"pseudo_experiments": rows}))  # NaN/Infinity as Python writes
    return path


ROW = {"trial": 0, "pe": 0, "mu_true": 1.0, "mu_hat": 1.0, "mu16": 0.7, "mu84": 1.3}


@pytest.mark.parametrize("key, value, message", [
    ("mu16", math.nan, "mu16 = nan is not finite; fix or drop that record"),
    ("mu84", math.inf, "mu84 = inf is not finite; fix or drop that record"),
    ("mu16", 2.0, "mu16 = 2.0 > mu84 = 1.3"),
    ("mu_hat", "x", "mu_hat = 'x' is not a number"),
])
def test_score_rejects_bad_values_naming_file_trial_and_pe(tmp_path, capsys, key, value,
                                                          message):
    path = _results(tmp_path, [ROW, dict(ROW, pe=1, **{key: value})])
    line = _fails(["score", path], capsys)
    assert line == f"workbench: error: {path}: trial 0, pe 1 (record 1): {message}"


def test_score_rejects_empty_binary_and_foreign_files(tmp_path, capsys):
    empty = _results(tmp_path, [])
    assert _fails(["score", empty], capsys) == (
        f"workbench: error: {empty}: nothing to score: no pseudo-experiments")
    failed = _results(tmp_path, [{"error": "boom"}], "failed.json")
    assert _fails(["score", failed], capsys) == (
        f"workbench: error: {failed}: nothing to score: all 1 pseudo-experiments failed")
    binary = tmp_path / "results.bin"
    binary.write_bytes(bytes(range(256)))
    assert _fails(["score", binary], capsys) == (
        f"workbench: error: {binary} is not a workbench results file (not UTF-8 JSON text)")
    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    assert _fails(["score", other], capsys) == (
        f"workbench: error: {other} is not a workbench results file (no 'pseudo_experiments' "
        "list)")
    assert _fails(["score", tmp_path], capsys) == (
        f"workbench: error: {tmp_path} is a folder; give its results.json "
        f"({tmp_path / 'results.json'})")


def test_score_prints_valid_json(tmp_path, capsys):
    path = _results(tmp_path, [ROW, dict(ROW, pe=1, mu84=1.0, mu16=1.0), {"error": "x"}])
    assert main(["score", str(path), "--eps", "0"]) == 0  # width > 0: finite
    json.loads(capsys.readouterr().out)
    zero = _results(tmp_path, [dict(ROW, mu16=1.0, mu84=1.0)], "zero.json")
    assert _fails(["score", zero, "--eps", "0"], capsys) == (
        f"workbench: error: {zero}: the score is not finite (zero widths with --eps 0.0?); "
        "use --eps > 0")


# -- a genuine bug keeps its traceback; --debug shows one for anticipated errors ----------
def test_a_bug_keeps_its_traceback_and_exit_3(tmp_path, capsys, monkeypatch):
    import workbench.cli as cli

    monkeypatch.setattr(cli, "cmd_score", lambda args: {}["boom"])
    monkeypatch.setattr(cli.build_parser().__class__, "parse_args",
                        lambda self, argv=None: _Namespace(cli.cmd_score))
    assert cli.main(["score", "x"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'boom'" in err
    assert err.strip().splitlines()[-1].startswith("workbench: internal error (KeyError)")


class _Namespace:
    def __init__(self, func):
        self.func, self.quiet, self.verbose, self.debug = func, 0, 0, False


def test_debug_shows_the_traceback_of_an_anticipated_error(tmp_path, capsys):
    assert main(["score", str(tmp_path / "missing.json"), "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("does not exist")


# -- -q / -v / --json, the plugin listing ------------------------------------------------
def test_json_output_is_one_document_and_quiet_hides_info(tmp_path, capsys, toys):
    spec = _spec_file(tmp_path, trials=1, per_trial=2)
    assert main(["run", str(spec), "--json", "-v"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert set(doc) == {"summary", "directory", "inference_median_s", "resumed_pes",
                        "training_cached", "exit_code"}
    assert doc["summary"]["n_pseudo_experiments"] == 2 and doc["exit_code"] == 0
    assert "workbench: debug: training cached in" in captured.err
    assert main(["run", str(spec), "--resume", "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # -q: no info line ("training loaded from ...")
    assert "results written to" in captured.out


def test_plugins_lists_each_strategy_with_summary_and_parameters(capsys):
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    details = listing["strategy_details"]
    pl = details["interval"]["profile-likelihood"]
    assert pl["plugin"] == "profile-likelihood" and pl["summary"]
    assert all(set(p) == {"default", "type"} for p in pl["parameters"].values())
    registry = registry_module.get_registry()
    for kind, by_name in details.items():
        for name, info in by_name.items():
            strategy = registry.get(kind, name)
            assert info["summary"] == strategy.summary
            assert {p: d["type"] for p, d in info["parameters"].items()} == \
                strategy.parameter_types
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "strategies" in out and "profile-likelihood" in out and "[red]" not in out


def test_every_option_has_help_and_the_description_has_no_markup():
    from workbench.cli import build_parser

    parser = build_parser()
    assert "``" not in parser.description and "|" not in parser.description
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help, f"workbench {name} {action.option_strings or action.dest}"
