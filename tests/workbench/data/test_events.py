"""The Events container: schema validation (errors name the column) and basic behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.data.events import Events, SchemaError, decode_processes, encode_processes
from workbench.data.schema import FEATURES, PROCESSES


@pytest.fixture
def columns(reference_columns) -> dict[str, np.ndarray]:
    """A fresh, mutable copy of the reference sample's raw columns."""
    return {k: v.copy() for k, v in reference_columns.items()}


def test_valid_sample_builds_with_schema_dtypes(columns):
    ev = Events.from_columns(columns)
    assert len(ev) == len(columns["PRI_met"])
    assert all(ev[f].dtype == np.float32 for f in FEATURES)
    assert ev.weights.dtype == np.float64 and ev.process.dtype == np.int8
    np.testing.assert_array_equal(ev.detailed_labels, columns["detailed_labels"])
    np.testing.assert_array_equal(ev.labels, columns["labels"])


@pytest.mark.parametrize("name", ["PRI_met", "DER_mass_vis", "PRI_n_jets"])
def test_missing_column_is_named(columns, name):
    del columns[name]
    with pytest.raises(SchemaError, match=name):
        Events.from_columns(columns)


def test_extra_column_is_named_unless_allowed(columns):
    columns["PRI_tau_charge"] = np.zeros(len(columns["PRI_met"]))
    with pytest.raises(SchemaError, match="PRI_tau_charge"):
        Events.from_columns(columns)
    ev = Events.from_columns(columns, allow_extra=True)
    assert "PRI_tau_charge" not in ev


@pytest.mark.parametrize("name", ["PRI_lep_pt", "weights", "labels"])
def test_wrong_dtype_is_named(columns, name):
    columns[name] = np.array(["x"] * len(columns["PRI_met"]))
    with pytest.raises(SchemaError, match=name):
        Events.from_columns(columns)


def test_two_dimensional_column_is_named(columns):
    n = len(columns["PRI_met"])
    columns["DER_pt_h"] = np.zeros((n, 2))
    with pytest.raises(SchemaError, match="DER_pt_h"):
        Events.from_columns(columns)


def test_length_mismatch_is_reported(columns):
    columns["PRI_met_phi"] = columns["PRI_met_phi"][:-1]
    with pytest.raises(SchemaError, match="PRI_met_phi"):
        Events.from_columns(columns)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ["PRI_had_eta", "DER_sum_pt", "weights"])
def test_non_finite_values_are_named_with_row(columns, name, bad):
    columns[name][17] = bad
    with pytest.raises(SchemaError, match=rf"'{name}'.*row 17"):
        Events.from_columns(columns)


def test_negative_weights_are_named(columns):
    columns["weights"][[4, 40]] = -1.0
    with pytest.raises(SchemaError, match=r"'weights'.*2 negative.*row 4"):
        Events.from_columns(columns)


def test_unknown_process_label_is_named(columns):
    labels = columns["detailed_labels"].astype(object)
    labels[3] = "wjets"
    columns["detailed_labels"] = labels
    with pytest.raises(SchemaError, match=r"'detailed_labels'.*wjets"):
        Events.from_columns(columns)


def test_unknown_process_code_is_named(columns):
    codes = encode_processes(columns.pop("detailed_labels"))
    codes[0] = 7
    columns["process"] = codes
    with pytest.raises(SchemaError, match=r"'process'.*7"):
        Events.from_columns(columns)


def test_labels_must_agree_with_process(columns):
    columns["labels"] = 1 - columns["labels"]
    with pytest.raises(SchemaError, match="labels"):
        Events.from_columns(columns)
    columns["labels"] = np.full(len(columns["PRI_met"]), 2.0)
    with pytest.raises(SchemaError, match="labels"):
        Events.from_columns(columns)


def test_labels_derived_from_process_and_weights_default_to_one(columns):
    del columns["labels"], columns["weights"]
    ev = Events.from_columns(columns)
    np.testing.assert_array_equal(ev.labels, (ev.detailed_labels == "htautau").astype(np.int8))
    assert (ev.weights == 1).all()


def test_bookkeeping_only_sample_has_the_right_length():
    """A sample with no features (weights + truth only) keeps its length (bug fixed)."""
    ev = Events.from_columns(
        {"detailed_labels": np.array(["ttbar", "htautau", "ztautau"])}, features=()
    )
    assert len(ev) == 3 and (ev.weights == 1).all()


def test_encode_decode_round_trip():
    labels = np.array(list(PROCESSES) * 3)
    np.testing.assert_array_equal(decode_processes(encode_processes(labels)), labels)


def test_selection_and_truth_removal(reference_sample):
    ev = reference_sample
    sig = ev.of_process("htautau")
    assert len(sig) == int((ev.detailed_labels == "htautau").sum()) and sig.labels.all()
    pe = ev.without_truth()
    assert not pe.is_labelled and (pe.weights == 1).all()
    with pytest.raises(ValueError, match="wjets"):
        ev.of_process("wjets")
    sums = ev.sum_weights(by_process=True)
    assert sum(sums.values()) == pytest.approx(ev.sum_weights())
