"""The ``challenge-submission`` interval strategy: organisers'-format submissions
(tests/data/submissions/) run unmodified; the provided ``get_train_set`` and
``systematics`` against the workbench engine and, for ``systematics``, against the
organisers' own function (``HiggsML.systematics`` 0.1.5) on the reference samples."""

from __future__ import annotations

import json
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from toys import ResampledReference, reference_frame, synthetic_events, training_data

from workbench import DERIVED, FEATURES, PRIMARY, NuisanceParameters, hookimpl
from workbench.data.schema import PROCESSES
from workbench.plugin.registry import PluginError, build_registry, get_registry
from workbench.run.runner import run
from workbench.spec import parse_spec
from workbench.systematics.engine import apply_systematics, weight_scale_factors
from workbench_builtins.intervals.challenge_submission import (
    ChallengeSubmission,
    SubmissionError,
    SubmissionParams,
)
from workbench_builtins.intervals.challenge_submission.frames import (
    TRAIN_COLUMNS,
    TrainSet,
    events_frame,
    prediction_input,
    systematics,
)

pd = pytest.importorskip("pandas")

SUBMISSIONS = Path(__file__).resolve().parents[2] / "data" / "submissions"
CLOSED_FORM = "counting"


def submission(name: str, **params) -> ChallengeSubmission:
    return ChallengeSubmission(directory=str(SUBMISSIONS / name), **params)


@pytest.fixture(scope="module")
def sample():
    return synthetic_events(3000, seed=5)


@pytest.fixture
def data(sample, tmp_path):
    d = training_data(sample)
    d.output = tmp_path
    return d


def counting_answer(train, pe_events):
    """The closed form the counting submission implements, from the engine directly."""
    nominal = apply_systematics(train, NuisanceParameters(), seed=31415)
    sums = nominal.sum_weights(by_process=True)
    s = sums["htautau"]
    b = sum(v for k, v in sums.items() if k != "htautau")
    n = len(pe_events)
    return (n - b) / s, np.sqrt(n) / s


# -- registration and parameters ---------------------------------------------------
def test_registered_with_declared_parameters():
    strategy = get_registry().get("interval", "challenge-submission")
    assert strategy.params_type is SubmissionParams
    assert strategy.parameter_types == {"directory": "str", "environment": "dict[str, str]",
                                        "in_process": "bool"}
    made = get_registry().create("interval", "challenge-submission",
                                 {"directory": str(SUBMISSIONS / CLOSED_FORM),
                                  "environment": {"A": "1"}})
    assert isinstance(made, ChallengeSubmission) and made.params.environment == {"A": "1"}


@pytest.mark.parametrize("params, match", [
    ({}, "missing required parameter"),
    ({"directory": "/no/such/folder"}, "is not a folder"),
    ({"directory": str(SUBMISSIONS)}, "has no model.py"),
    ({"directory": str(SUBMISSIONS / CLOSED_FORM), "environment": {"A": 1}}, "dict"),
    ({"directory": str(SUBMISSIONS / CLOSED_FORM), "folder": "x"}, "unknown parameter"),
])
def test_bad_parameters_are_clear_errors(params, match):
    with pytest.raises(PluginError, match=match):
        get_registry().create("interval", "challenge-submission", params)


def test_missing_pandas_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    with pytest.raises(PluginError, match=r"pip install 'fair-workbench\[challenge\]'"):
        submission(CLOSED_FORM)


# -- fit / predict -------------------------------------------------------------------
def test_counting_submission_closed_form(data, sample, capfd):
    strategy = submission(CLOSED_FORM)
    strategy.fit(data, None, None)
    pe = sample[::3].without_truth()
    result = strategy.predict(pe)
    mu_hat, half = counting_answer(data.train, pe)
    assert result.mu_hat == pytest.approx(mu_hat, rel=1e-9)
    assert (result.mu16, result.mu84) == pytest.approx((mu_hat - half, mu_hat + half), rel=1e-9)
    # extra keys are kept, delta_mu_hat too; the PE is the 28 features in the dataset's order
    assert result.info["delta_mu_hat"] == pytest.approx(2 * half)
    assert result.info["n_events"] == len(pe)
    assert result.info["columns"] == list(FEATURES)
    # prints go to the run folder's log, not to the terminal
    out, err = capfd.readouterr()
    assert "counting:" not in out + err
    log = (data.output / "submission-counting" / "output.log").read_text()
    assert "counting: constructed" in log and "a line on stderr" in log
    assert f"counting: N={len(pe)}" in log
    assert strategy.log_path == data.output / "submission-counting" / "output.log"


def test_without_a_run_folder_the_log_goes_to_a_temporary_folder(sample, capfd):
    strategy = submission(CLOSED_FORM)
    strategy.fit(training_data(sample), None, None)
    strategy.predict(sample.without_truth())
    assert "counting:" not in "".join(capfd.readouterr())
    assert strategy.log_path.is_file() and "counting: S=" in strategy.log_path.read_text()


def test_submission_using_systematics_during_fit(data):
    strategy = submission("with_systematics")
    strategy.fit(data, None, None)
    model = strategy.model
    shifted = apply_systematics(data.train, NuisanceParameters(tes=1.02, soft_met=1.0), seed=5)
    b_up = sum(v for k, v in shifted.sum_weights(by_process=True).items() if k != "htautau")
    assert model.b_tes_up == pytest.approx(b_up, rel=1e-9) and model.b_tes_up != model.b
    # the dict form, on a quarter of the training set (thresholds may drop a few events)
    assert 0 < model.dict_rows <= int(0.25 * len(data.train)) and model.dict_weight > 0
    result = strategy.predict(data.train[::2].without_truth())
    assert result.info["b_tes_up"] == pytest.approx(b_up, rel=1e-9)


def test_sibling_modules_are_isolated(data, monkeypatch):
    """Bare-name sibling imports work; two submissions' modules of the same name do
    not leak into each other or into the process; sys.path is left as it was."""
    sentinel = types.ModuleType("analysis")
    monkeypatch.setitem(sys.modules, "analysis", sentinel)
    monkeypatch.delitem(sys.modules, "model", raising=False)
    path_before = list(sys.path)
    first, second = submission("sibling"), submission("failing", environment={"FAIL_MODE": "ok"})
    first.fit(data, None, None)
    second.fit(data, None, None)
    pe = data.train[::4].without_truth()
    a = first.predict(pe)  # imports lib/constants.py lazily, at predict time
    assert a.info["module"] == "sibling" and a.info["half_width"] == 1.0
    assert second.model.name == "failing"
    assert second.predict(pe).mu_hat == 1.0
    assert first.predict(pe).info["module"] == "sibling"
    assert sys.modules["analysis"] is sentinel
    assert "model" not in sys.modules and "constants" not in sys.modules
    assert sys.path == path_before
    assert type(first.model).__module__ == type(second.model).__module__ == "model"
    assert type(first.model) is not type(second.model)


def test_environment_is_set_only_while_the_submission_runs(data, monkeypatch):
    monkeypatch.delenv("FAIL_MODE", raising=False)
    strategy = submission("failing", environment={"FAIL_MODE": "nan"})
    strategy.fit(data, None, None)
    import os

    assert "FAIL_MODE" not in os.environ
    with pytest.raises(ValueError, match="p16=nan"):
        strategy.predict(data.train[:1000].without_truth())


# -- failures --------------------------------------------------------------------
@pytest.mark.parametrize("mode, match", [
    ("missing", r"challenge-submission 'failing': predict\(\) \(PE \w+\) returned no 'p84'"),
    ("string", r"'failing'.*returned p16='low' \(str\), expected a number"),
    ("nan", r"'failing'.*returned p16=nan \(not finite\)"),
    ("inverted", r"'failing'.*p16=1.1 > p84=0.9"),
])
def test_malformed_answers_name_the_submission_and_the_key(data, mode, match):
    strategy = submission("failing", environment={"FAIL_MODE": mode})
    strategy.fit(data, None, None)
    with pytest.raises(ValueError, match=match):
        strategy.predict(data.train[:1001].without_truth())


def test_predict_raising_is_a_runtime_error_with_a_traceback_file(data):
    strategy = submission("failing", environment={"FAIL_MODE": "raise"})
    strategy.fit(data, None, None)
    assert strategy.predict(data.train[:1001].without_truth()).mu_hat == 1.0  # odd: fine
    with pytest.raises(RuntimeError, match=r"'failing': predict\(\) raised ZeroDivisionError: "
                                           r"division by zero \(traceback: submission-failing/"
                                           r"predict-\w+\.traceback\.txt in the run folder\)"):
        strategy.predict(data.train[:1000].without_truth())
    tracebacks = list((data.output / "submission-failing").glob("predict-*.traceback.txt"))
    assert len(tracebacks) == 1 and "1 / 0" in tracebacks[0].read_text()


def test_fit_raising_names_the_submission(data):
    strategy = submission("failing", environment={"FAIL_MODE": "fit"})
    with pytest.raises(SubmissionError, match=r"'failing': fit\(\) raised RuntimeError: fit "
                                              r"failed on purpose"):
        strategy.fit(data, None, None)
    assert "fit failed on purpose" in (
        data.output / "submission-failing" / "fit.traceback.txt").read_text()


def test_predict_before_fit():
    with pytest.raises(RuntimeError, match="before fit"):
        submission(CLOSED_FORM).predict(synthetic_events(10, 1).without_truth())


# -- pickling ------------------------------------------------------------------------
def test_fitted_strategy_pickles_and_predicts_the_same(data, monkeypatch):
    strategy = submission(CLOSED_FORM)
    strategy.fit(data, None, None)
    pe = data.train[::5].without_truth()
    expected = strategy.predict(pe)
    copy = pickle.loads(pickle.dumps(strategy))
    assert copy.model is None  # unpickled lazily, in the submission's import world
    monkeypatch.delitem(sys.modules, "model", raising=False)
    again = copy.predict(pe)
    assert (again.mu_hat, again.mu16, again.mu84) == (expected.mu_hat, expected.mu16,
                                                      expected.mu84)
    assert "model" not in sys.modules
    # the training sample stays in the fitting process
    with pytest.raises(RuntimeError, match="only available in the process that ran fit"):
        copy.model.get_train_set()


def test_unpicklable_model_is_a_clear_error(data):
    strategy = submission("failing", environment={"FAIL_MODE": "unpicklable"})
    strategy.fit(data, None, None)
    with pytest.raises(SubmissionError, match=r"'failing': the fitted Model does not pickle "
                                              r"\(TypeError: .*lock.*in_process = true"):
        pickle.dumps(strategy)
    in_process = submission("failing", environment={"FAIL_MODE": "unpicklable"},
                            in_process=True)
    in_process.fit(data, None, None)
    blob = pickle.dumps(in_process)  # no model inside: it stays here
    copy = pickle.loads(blob)
    assert copy.model is None and copy._blob is None
    # a copy unpickled once that process no longer serves (a later run's training cache)
    in_process._server.close()
    with pytest.raises(SubmissionError, match="the process that ran fit.*is gone"):
        pickle.loads(blob)


# -- get_train_set -------------------------------------------------------------------
def test_get_train_set_is_the_public_dataset_layout(sample):
    provider = TrainSet(sample, seed=3)
    frame = provider()
    assert tuple(frame.columns) == TRAIN_COLUMNS
    assert len(frame) == len(sample)
    assert all(frame[c].dtype == np.float32 for c in (*PRIMARY, *DERIVED, "labels"))
    assert set(frame["detailed_labels"]) == set(PROCESSES)
    np.testing.assert_array_equal(frame["weights"].to_numpy(), sample.weights)
    np.testing.assert_array_equal(frame["labels"].to_numpy(), sample.labels)
    frame.pop("weights")
    assert "weights" in provider().columns  # a fresh frame per call


def test_get_train_set_subsets(sample):
    provider = TrainSet(sample, seed=3)
    total = sample.weights.sum()
    by_count = provider(train_size=1000)
    by_fraction = provider(train_size=0.1)
    assert len(by_count) == 1000 and len(by_fraction) == int(0.1 * len(sample))
    assert by_count["weights"].sum() == pytest.approx(total)  # total weight kept
    assert provider(train_size=10**9).shape[0] == len(sample)
    picked = provider(selected_indices=[5, 1, 3])
    np.testing.assert_array_equal(picked["PRI_had_pt"].to_numpy(),
                                  sample["PRI_had_pt"][[1, 3, 5]])
    again = TrainSet(sample, seed=3)
    pd.testing.assert_frame_equal(again(train_size=1000), by_count)  # seeded by the run
    for bad in (1.5, "10", {"a": 1}):
        with pytest.raises(ValueError):
            provider(train_size=bad)
    with pytest.raises(ValueError, match="must lie in"):
        provider(selected_indices=[len(sample)])
    with pytest.raises(ValueError, match="list or a numpy array"):
        provider(selected_indices=5)


def test_prediction_input(sample):
    pe = sample.without_truth()
    test_set = prediction_input(pe)
    assert set(test_set) == {"data", "weights"}
    assert list(test_set["data"].columns) == list(FEATURES)
    assert test_set["weights"].sum() == len(pe)


# -- systematics ---------------------------------------------------------------------
NPS = [{"tes": 1.0, "jes": 1.0, "soft_met": 0.0}, {"tes": 0.97, "jes": 1.04, "soft_met": 0.0},
       {"tes": 1.05, "jes": 0.92, "soft_met": 2.0, "seed": 9}]


@pytest.mark.parametrize("nps", NPS)
def test_systematics_is_the_engine(sample, nps):
    nps = dict(nps)
    frame = events_frame(sample, labelled=True)
    frame["event_id"] = np.arange(len(frame))
    out = systematics(frame, **nps, ttbar_scale=1.1, diboson_scale=0.5, bkg_scale=1.005)
    seed = nps.pop("seed", 31415)
    ours = apply_systematics(sample, NuisanceParameters(**nps, ttbar_scale=1.1,
                                                        diboson_scale=0.5, bkg_scale=1.005),
                             seed=seed)
    assert list(out.columns) == [*TRAIN_COLUMNS, "event_id"]
    assert isinstance(out.index, pd.RangeIndex) and len(out) == len(ours)
    for name in FEATURES:
        np.testing.assert_array_equal(out[name].to_numpy(), ours[name], err_msg=name)
    np.testing.assert_allclose(out["weights"].to_numpy(), ours.weights, rtol=1e-15)
    kept = out["event_id"].to_numpy()
    np.testing.assert_array_equal(out["detailed_labels"].to_numpy(dtype=str),
                                  sample.detailed_labels[kept])
    factors = weight_scale_factors(NuisanceParameters(ttbar_scale=1.1, diboson_scale=0.5,
                                                      bkg_scale=1.005))
    np.testing.assert_allclose(out["weights"].to_numpy(),
                               sample.weights[kept] * factors[sample.process[kept]])
    assert len(frame) == len(sample) and "event_id" in frame  # input untouched


def test_systematics_dict_form_and_options(sample):
    frame = events_frame(sample, labelled=False)
    as_dict = {"data": frame, "weights": np.ones(len(frame)), "settings": {"x": 1}}
    out = systematics(as_dict, tes=1.03, soft_met=1.0)
    assert list(out) == ["weights", "data", "settings"] and out["settings"] == {"x": 1}
    assert list(out["data"].columns) == list(FEATURES)
    assert len(out["weights"]) == len(out["data"]) < len(frame)
    # without postprocessing no event is dropped; the DER_ features are recomputed anyway
    raw = systematics(frame.drop(columns=list(DERIVED)), tes=0.9, dopostprocess=False)
    assert len(raw) == len(frame) and list(raw.columns) == list(FEATURES)
    unlabelled = systematics(frame.assign(weights=1.0), ttbar_scale=1.2)  # no detailed_labels
    assert (unlabelled["weights"] == 1.0).all()
    with pytest.raises(ValueError, match="DataFrame or a dictionary"):
        systematics([1, 2])
    with pytest.raises(ValueError, match="'weights' key"):
        systematics({"data": frame})
    with pytest.raises(ValueError, match="lacks the column"):
        systematics(frame.drop(columns=["PRI_met"]))
    with pytest.raises(ValueError, match="tes=1.3"):
        systematics(frame, tes=1.3)


def _higgsml():
    return pytest.importorskip("HiggsML.systematics")


PARITY = [(1.0, 1.0, 0.0), (0.9, 1.1, 0.5), (1.1, 0.9, 3.0), (0.97, 1.03, 1.5)]


@pytest.mark.filterwarnings("ignore:The inplace keyword")
@pytest.mark.parametrize("tes, jes, soft_met", PARITY)
@pytest.mark.parametrize("which", ["reference_sample", "generated_events"])
def test_systematics_parity_with_the_organisers(request, which, tes, jes, soft_met):
    """Same events kept, same features (1e-3 abs / 1e-5 rel, as the engine's own parity
    tests), DataFrame and dict forms.  Weights: the oracle ignores the weight scales
    (its known quirk), ours scales them; without scales both keep the weights."""
    reference = _higgsml()
    events = request.getfixturevalue(which)
    frame = reference_frame(events, np.float64)
    kwargs = {"tes": tes, "jes": jes, "soft_met": soft_met, "seed": 7}
    ours, ref = systematics(frame, **kwargs), reference.systematics(data_set=frame, **kwargs)
    np.testing.assert_array_equal(ours["event_id"].to_numpy(), ref["event_id"].to_numpy())
    for name in FEATURES:
        a, b = ours[name].to_numpy(np.float64), ref[name].to_numpy(np.float64)
        bad = ~(np.abs(a - b) <= np.maximum(1e-3, 1e-5 * np.abs(b)))
        assert not bad.any(), (name, int(bad.sum()))
    kept = ours["event_id"].to_numpy()
    np.testing.assert_array_equal(ours["weights"].to_numpy(), events.weights[kept])
    # the oracle's DataFrame form stores float64 columns (weights too) as float32
    np.testing.assert_allclose(ref["weights"].to_numpy(), events.weights[kept], rtol=1e-7)
    # the dict form, as the organisers' ingestion builds a pseudo-experiment
    features = frame[list(FEATURES)]
    pe = {"data": features, "weights": np.ones(len(features))}
    ours_d, ref_d = systematics(pe, **kwargs), reference.systematics(data_set=pe, **kwargs)
    assert len(ours_d["data"]) == len(ref_d["data"]) == len(ours)
    for name in FEATURES:
        a = ours_d["data"][name].to_numpy(np.float64)
        b = ref_d["data"][name].to_numpy(np.float64)
        assert (np.abs(a - b) <= np.maximum(1e-3, 1e-5 * np.abs(b))).all(), name
    # weight scales: the oracle leaves the weights, we apply the challenge's scales
    scaled = systematics(frame, **kwargs, ttbar_scale=1.2, bkg_scale=1.01)
    ref_scaled = reference.systematics(data_set=frame, **kwargs, ttbar_scale=1.2,
                                       bkg_scale=1.01)
    np.testing.assert_array_equal(ref_scaled["weights"].to_numpy(), ref["weights"].to_numpy())
    np.testing.assert_array_equal(scaled["event_id"].to_numpy(), kept)
    factor = weight_scale_factors(NuisanceParameters(ttbar_scale=1.2, bkg_scale=1.01))
    np.testing.assert_allclose(scaled["weights"].to_numpy(),
                               events.weights[kept] * factor[events.process[kept]])


# -- through the runner and its executors --------------------------------------------
toy = types.ModuleType("toy_challenge")
toy.register_generators = hookimpl(lambda register: register("toy-reference", ResampledReference))


@pytest.fixture(scope="module")
def registry():
    return build_registry(extra_plugins={"toy_challenge": toy})


def _spec(out: Path, name: str, trials=2, per_trial=3, **params):
    return parse_spec({
        "name": "challenge-submission-test",
        "seed": 5,
        "data": {"generator": "toy-reference",
                 "train": {p: 2000 for p in PROCESSES},
                 "holdout": {p: 100 for p in PROCESSES},
                 "test_pool": {p: 50000 for p in PROCESSES},
                 "luminosity_fb": 0.05},
        "pseudo_experiments": {"trials": trials, "per_trial": per_trial,
                               "mu_range": [0.5, 3.0], "randomise": ["tes", "jes"]},
        "interval": {"name": "challenge-submission",
                     "params": {"directory": str(SUBMISSIONS / name), **params}},
        "output": {"directory": str(out), "plots": False, "progress": False},
    })


@pytest.fixture(scope="module")
def inline_results(registry, tmp_path_factory):
    out = tmp_path_factory.mktemp("inline")
    run(_spec(out, CLOSED_FORM), registry)
    return out


def test_runs_through_the_runner(inline_results):
    results = json.loads((inline_results / "results.json").read_text())
    assert results["summary"]["n_failed"] == 0 and results["summary"]["n_pseudo_experiments"] == 6
    record = results["pseudo_experiments"][0]
    assert record["info"]["n_events"] == record["n_events"]
    assert set(record["info"]) == {"delta_mu_hat", "n_events", "columns"}
    log = (inline_results / "submission-counting" / "output.log").read_text()
    assert log.count("predict() (PE") == 6


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_executors_give_the_inline_results(registry, tmp_path, inline_results, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    run(_spec(tmp_path, CLOSED_FORM), registry, executor=executor, workers=2)
    assert (tmp_path / "results.json").read_bytes() == \
        (inline_results / "results.json").read_bytes()
    # every process appended to the same log
    assert (tmp_path / "submission-counting" / "output.log").read_text().count("predict()") == 6


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_in_process_evaluation_with_an_unpicklable_model(registry, tmp_path, executor):
    """in_process = true: the workers send their PEs to the process that ran fit()."""
    if executor == "dask":
        pytest.importorskip("distributed")
    env = {"FAIL_MODE": "unpicklable"}
    ref = run(_spec(tmp_path / "inline", "failing", environment=env), registry)
    got = run(_spec(tmp_path / executor, "failing", environment=env, in_process=True),
              registry, executor=executor, workers=2)
    assert got.summary["n_failed"] == 0 and got.records == ref.records
    if executor == "dask":  # without in_process: refused, and the error chain says why
        with pytest.raises(Exception) as refused:
            run(_spec(tmp_path / "refused", "failing", environment=env), registry,
                executor="dask", workers=1)
        chain, exc = [], refused.value
        while exc is not None:
            chain.append(exc)
            exc = exc.__cause__ or exc.__context__
        causes = [e for e in chain if isinstance(e, SubmissionError)]
        assert causes and "'failing': the fitted Model does not pickle" in str(causes[0])


def test_failed_pes_are_recorded_not_scored(registry, tmp_path):
    result = run(_spec(tmp_path, "failing", trials=3, per_trial=4,
                       environment={"FAIL_MODE": "raise"}), registry)
    failed = [r for r in result.records if "error" in r]
    assert 0 < len(failed) < len(result.records)
    assert result.summary["n_failed"] == len(failed)
    assert all(np.isfinite(result.summary[k]) for k in ("coverage", "width", "score"))
    assert all("SubmissionError: challenge-submission 'failing': predict() raised "
               "ZeroDivisionError" in r["error"] for r in failed)
    assert len(list((tmp_path / "submission-failing").glob("predict-*.traceback.txt"))) == \
        len(failed)


def test_output_capture_is_per_thread(tmp_path, capsys):
    """Only the submission's thread writes to the log: another thread (a progress bar)
    keeps the terminal, and the streams are put back afterwards."""
    import threading

    from workbench_builtins.intervals.challenge_submission.isolation import OutputCapture

    stdout = sys.stdout
    log = tmp_path / "out.log"
    with OutputCapture(log).active():
        print("from the submission")
        other = threading.Thread(target=lambda: print("from another thread"))
        other.start()
        other.join()
        print("to stderr", file=sys.stderr)
    assert sys.stdout is stdout
    assert log.read_text() == "from the submission\nto stderr\n"
    out, err = capsys.readouterr()
    assert out == "from another thread\n" and err == ""
