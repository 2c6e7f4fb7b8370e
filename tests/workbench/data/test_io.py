"""File I/O: parquet/ROOT round trips, streaming, atomic writes, bad files, file sources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot
from toys import DATA_DIR

from workbench.data.events import Events, SchemaError
from workbench.data.io import (
    DataFileError,
    FileSchemaError,
    ParquetEventWriter,
    iter_parquet,
    iter_root,
    parquet_row_groups,
    read_metadata,
    read_parquet,
    read_root,
    write_parquet,
    write_root,
)
from workbench.data.schema import DERIVED, EXPECTED_EVENTS, FEATURES, PRIMARY, PROCESSES
from workbench_builtins.generators.files import ParquetSource, RootSource, sample_ranks

DATA = DATA_DIR
SAMPLE = DATA / "fair_universe_sample.parquet"


@pytest.fixture(scope="module")
def sample() -> Events:
    return read_parquet(SAMPLE)


def assert_same_events(a: Events, b: Events) -> None:
    assert len(a) == len(b)
    assert sorted(a.fields) == sorted(b.fields)
    for name in a.fields:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def row_keys(ev: Events) -> np.ndarray:
    """One hashable key per event (its feature bytes), to identify rows across files."""
    m = np.ascontiguousarray(ev.feature_matrix())
    return m.view(np.dtype((np.void, m.dtype.itemsize * m.shape[1]))).ravel()


# -- parquet -----------------------------------------------------------------------
def test_reference_sample_reads_as_stored(sample):
    raw = pq.read_table(SAMPLE)
    assert len(sample) == raw.num_rows
    for name in FEATURES:
        np.testing.assert_array_equal(sample[name], raw.column(name).to_numpy())
    np.testing.assert_array_equal(sample.detailed_labels, raw.column("detailed_labels").to_numpy())
    np.testing.assert_array_equal(sample.labels, raw.column("labels").to_numpy())


def test_parquet_round_trip_keeps_dataset_schema(sample, tmp_path):
    out = write_parquet(sample, tmp_path / "rt.parquet", row_group_size=128)
    assert_same_events(sample, read_parquet(out))
    ours, theirs = pq.read_schema(out), pq.read_schema(SAMPLE)
    assert ours.names == theirs.names
    assert [f.type for f in ours] == [f.type for f in theirs]
    assert parquet_row_groups(out) == [128, 128, 128, 116]


def test_metadata_json_matches_file_and_official_loader(sample, tmp_path):
    from HiggsML.datasets import Data

    out = write_parquet(sample, tmp_path / "rt.parquet")
    meta = read_metadata(tmp_path / "rt_metadata.json")
    stored = pq.read_table(out)
    w = stored.column("weights").to_numpy().astype(np.float64)
    labels = stored.column("detailed_labels").to_numpy()
    assert meta.total_rows == len(sample)
    assert meta.columns == stored.column_names
    for p in PROCESSES:
        assert meta.rows_per_process[p] == int((labels == p).sum())
        assert meta.sum_weights_per_process[p] == pytest.approx(w[labels == p].sum(), rel=1e-12)
    # the official loader finds our metadata and sees the same rows
    data = Data(str(tmp_path), test_size=0)
    assert data.total_rows == len(sample)
    data.load_train_set()
    df = data.get_train_set()
    np.testing.assert_allclose(df["PRI_met"].to_numpy(), sample["PRI_met"])
    assert df["weights"].sum() == pytest.approx(meta.sum_weights, rel=1e-6)


def test_reads_public_style_metadata(tmp_path):
    path = tmp_path / "FAIR_Universe_HiggsML_data_metadata.json"
    path.write_text(json.dumps({
        "author": "FAIR Universe", "total_rows": 1000, "total_columns": 31,
        "columns": ["PRI_lep_pt"], "detailed_labels": ["ztautau", "diboson", "ttbar", "htautau"],
        "sum_weights": 1051433.0, "luminosity": 10,
    }))
    meta = read_metadata(path)
    assert (meta.total_rows, meta.sum_weights, meta.luminosity) == (1000, 1051433.0, 10.0)
    assert meta.rows_per_process == {}
    path.write_text(json.dumps({"total_rows": "many"}))
    with pytest.raises(DataFileError, match="total_rows.*many|many.*total_rows"):
        read_metadata(path)
    path.write_text("{not json")
    with pytest.raises(DataFileError, match=str(path.name)):
        read_metadata(path)


def test_iter_parquet_streams_the_same_rows(sample, tmp_path):
    out = write_parquet(sample, tmp_path / "s.parquet", row_group_size=100)
    chunks = list(iter_parquet(out, batch_size=64))
    assert all(0 < len(c) <= 64 for c in chunks)
    assert_same_events(sample, Events.concatenate(chunks))
    first = read_parquet(out, max_events=123)
    assert_same_events(sample[:123], first)


def test_column_subset_and_derive(sample, tmp_path):
    sub = read_parquet(SAMPLE, columns=["PRI_met", "weights"])
    assert sorted(sub.fields) == ["PRI_met", "weights"]
    np.testing.assert_array_equal(sub["PRI_met"], sample["PRI_met"])
    # a file without DER_ columns: derive recomputes them close to the stored ones
    pq.write_table(pq.read_table(SAMPLE).drop_columns(list(DERIVED)), tmp_path / "pri.parquet")
    with pytest.raises(FileSchemaError, match="DER_mass_vis") as err:
        read_parquet(tmp_path / "pri.parquet")
    assert "pri.parquet" in str(err.value)
    derived = read_parquet(tmp_path / "pri.parquet", derive=True)
    for name in DERIVED:
        np.testing.assert_allclose(derived[name], sample[name], rtol=1e-2, atol=1e-2, err_msg=name)
    single = read_parquet(DATA / "ttbar_only.parquet", derive=True, process="ttbar")
    assert set(single.detailed_labels) == {"ttbar"} and not single.labels.any()


def test_chunked_writer_row_groups_and_content(sample, tmp_path):
    path = tmp_path / "chunked.parquet"
    with ParquetEventWriter(path, row_group_size=150) as writer:
        for lo, hi in [(0, 7), (7, 200), (200, 201), (201, 500)]:
            writer.write(sample[lo:hi])
    assert parquet_row_groups(path) == [150, 150, 150, 50]
    assert_same_events(sample, read_parquet(path))


def test_writes_are_atomic(sample, tmp_path):
    path = tmp_path / "a.parquet"
    write_parquet(sample[:10], path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with ParquetEventWriter(path) as writer:
            writer.write(sample)
            raise RuntimeError("crash mid-write")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "a_metadata.json"]
    with pytest.raises(SchemaError, match="process"):
        with ParquetEventWriter(tmp_path / "mixed.parquet") as writer:
            writer.write(sample[:5])
            writer.write(sample[5:10].without_truth())
    assert not (tmp_path / "mixed.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_unlabelled_round_trip(sample, tmp_path):
    pe = sample.without_truth()
    out = write_parquet(pe, tmp_path / "pe.parquet")
    assert "detailed_labels" not in pq.read_schema(out).names
    back = read_parquet(out)
    assert not back.is_labelled
    assert_same_events(pe, back)


def test_corrupt_and_truncated_parquet_name_the_file(sample, tmp_path):
    good = write_parquet(sample, tmp_path / "good.parquet", metadata=False)
    data = good.read_bytes()
    cases = {
        "truncated.parquet": data[: len(data) // 2],
        "garbage.parquet": b"PAR1" + os.urandom(2000) + b"PAR1",
        "empty.parquet": b"",
        # valid footer, damaged column chunks
        "scrambled.parquet": data[:4] + bytes(len(data) // 2) + data[4 + len(data) // 2:],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataFileError, match=name):
            read_parquet(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_parquet(tmp_path / "nope.parquet")


def test_missing_column_and_unknown_label_name_file_and_column(tmp_path):
    table = pq.read_table(SAMPLE)
    pq.write_table(table.drop_columns(["PRI_met"]), tmp_path / "nomet.parquet")
    with pytest.raises(FileSchemaError, match="nomet.parquet.*PRI_met"):
        read_parquet(tmp_path / "nomet.parquet")
    labels = table.column("detailed_labels").to_numpy().astype(object)
    labels[[3, 9]] = ["wjets", "Htautau"]
    idx = table.column_names.index("detailed_labels")
    bad = table.set_column(idx, "detailed_labels", pa.array(labels, pa.large_string()))
    pq.write_table(bad, tmp_path / "badlabel.parquet")
    with pytest.raises(FileSchemaError, match="badlabel.parquet") as err:
        read_parquet(tmp_path / "badlabel.parquet")
    assert "detailed_labels" in str(err.value)
    assert "wjets" in str(err.value) and "Htautau" in str(err.value)
    nan = table.set_column(0, "PRI_lep_pt", pa.array(np.full(len(table), np.nan, np.float32)))
    pq.write_table(nan, tmp_path / "nan.parquet")
    with pytest.raises(FileSchemaError, match="nan.parquet.*PRI_lep_pt"):
        read_parquet(tmp_path / "nan.parquet")


# -- ROOT --------------------------------------------------------------------------
def test_root_round_trip(sample, tmp_path):
    out = write_root(sample, tmp_path / "rt.root", chunk_size=200)
    assert_same_events(sample, read_root(out))
    with uproot.open(out) as f:
        tree = f["tree"]
        assert set(FEATURES) <= set(tree.keys())
        np.testing.assert_array_equal(tree["PRI_met"].array(library="np"), sample["PRI_met"])
        codes = tree["process"].array(library="np")
        mapping = str(f["process_labels"]).split(",")
    np.testing.assert_array_equal(np.asarray(mapping)[codes], sample.detailed_labels)
    chunks = list(iter_root(out, 120))
    assert [len(c) for c in chunks] == [120, 120, 120, 120, 20]
    assert_same_events(sample, Events.concatenate(chunks))
    unl = write_root(sample.without_truth(), tmp_path / "pe.root")
    assert_same_events(sample.without_truth(), read_root(unl))


def test_root_foreign_mapping_is_remapped(sample, tmp_path):
    order = ["ttbar", "diboson", "htautau", "ztautau"]
    codes = np.array([order.index(p) for p in sample.detailed_labels], np.int8)
    branches = {name: sample[name] for name in FEATURES}
    branches.update(weights=sample.weights.astype(np.float32), process=codes)
    with uproot.recreate(tmp_path / "foreign.root") as f:
        f["tree"] = branches
        f["process_labels"] = ",".join(order)
    back = read_root(tmp_path / "foreign.root")
    np.testing.assert_array_equal(back.detailed_labels, sample.detailed_labels)


def test_corrupt_root_names_the_file(sample, tmp_path):
    good = write_root(sample, tmp_path / "good.root")
    data = good.read_bytes()
    (tmp_path / "truncated.root").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.root").write_bytes(b"root" + os.urandom(3000))
    for name in ("truncated.root", "garbage.root"):
        with pytest.raises(DataFileError, match=name):
            read_root(tmp_path / name)
    with pytest.raises(DataFileError, match="good.root.*'nosuchtree'"):
        read_root(good, tree="nosuchtree")
    with uproot.recreate(tmp_path / "nomet.root") as f:
        f["tree"] = {name: sample[name] for name in FEATURES if name != "PRI_met"}
    with pytest.raises(FileSchemaError, match="nomet.root.*PRI_met"):
        read_root(tmp_path / "nomet.root")


# -- file sources (generator plugins) ------------------------------------------------
def test_plugins_are_registered():
    from workbench.plugin.registry import get_registry

    registry = get_registry()
    assert registry.get("generator", "parquet").factory is ParquetSource
    assert registry.get("generator", "root").factory is RootSource
    assert registry.get("generator", "parquet").plugin == "files"


def test_sample_ranks_is_uniform_without_replacement():
    from scipy import stats

    rng = np.random.default_rng(7)
    n, k, reps = 300, 40, 1500
    hits = np.zeros(n)
    for _ in range(reps):
        r = sample_ranks(rng, n, k, block=64)  # several blocks: hypergeometric split path
        assert len(np.unique(r)) == k and np.all(np.diff(r) > 0) and r[-1] < n
        hits[r] += 1
    expected = reps * k / n
    chi2 = ((hits - expected) ** 2 / (expected * (1 - k / n))).sum()
    assert stats.chi2.sf(chi2, n - 1) > 1e-3
    # blocks used must not matter for the per-block totals' law: mean rank is (n-1)/2
    ranks = np.concatenate([sample_ranks(rng, 10_000, 50, block=1000) for _ in range(200)])
    assert abs(ranks.mean() - 4999.5) < 4 * 2887 / np.sqrt(len(ranks))


@pytest.fixture(scope="module")
def source_file(sample, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "pool.parquet"
    write_parquet(sample, path, row_group_size=50, metadata=False)
    return path


def test_generate_counts_subset_and_count_reweighting(sample, source_file):
    counts = {"htautau": 30, "ztautau": -1, "ttbar": 5}
    ev = ParquetSource(str(source_file)).generate(counts, seed=3)
    n_file = {p: int((sample.detailed_labels == p).sum()) for p in PROCESSES}
    got = {p: int((ev.detailed_labels == p).sum()) for p in PROCESSES}
    assert got == {"htautau": 30, "ztautau": n_file["ztautau"], "ttbar": 5, "diboson": 0}
    keys = row_keys(sample)
    pos = {key: i for i, key in enumerate(keys.tolist())}
    idx = np.array([pos[k] for k in row_keys(ev).tolist()])
    assert len(np.unique(idx)) == len(ev)  # no duplicates, all rows from the file
    for p in ("htautau", "ttbar", "ztautau"):
        m = ev.detailed_labels == p
        ratio = n_file[p] / got[p]
        np.testing.assert_allclose(ev.weights[m], sample.weights[idx[m]] * ratio, rtol=1e-12)
    np.testing.assert_array_equal(ev["PRI_met"], sample["PRI_met"][idx])


@pytest.mark.parametrize("mode", ["sum", "expected", "none"])
def test_reweight_modes(sample, source_file, mode):
    ev = ParquetSource(str(source_file), reweight=mode).generate(
        {"htautau": 40, "ztautau": 100, "ttbar": 6, "diboson": -1}, seed=11)
    sums = ev.sum_weights(by_process=True)
    for p in PROCESSES:
        target = {"sum": sample.sum_weights(True)[p], "expected": EXPECTED_EVENTS[p]}.get(mode)
        if target is not None:
            assert sums[p] == pytest.approx(target, rel=1e-9)
    if mode == "none":
        assert set(np.round(ev.weights, 3)) <= set(np.round(sample.weights, 3))


def test_selection_depends_on_seed_not_on_file_layout(sample, source_file, tmp_path):
    counts = {"htautau": 25, "ztautau": 40, "ttbar": 4, "diboson": 1}
    a = ParquetSource(str(source_file), batch_size=17).generate(counts, seed=5)
    other = write_parquet(sample, tmp_path / "other.parquet", row_group_size=333)
    b = ParquetSource(str(other)).generate(counts, seed=5)
    root = write_root(sample, tmp_path / "pool.root", chunk_size=77)
    c = RootSource(str(root), unit_size=90, batch_size=31).generate(counts, seed=5)
    assert_same_events(a, b)
    assert_same_events(a, c)
    d = ParquetSource(str(source_file)).generate(counts, seed=6)
    assert set(row_keys(a).tolist()) != set(row_keys(d).tolist())


def test_iter_chunks_matches_generate(source_file):
    src = ParquetSource(str(source_file), reweight="sum")
    counts = {"htautau": 50, "ztautau": 120, "ttbar": -1}
    chunks = list(src.iter_chunks(counts, seed=9, chunk_size=64))
    assert [len(c) for c in chunks[:-1]] == [64] * (len(chunks) - 1) and 0 < len(chunks[-1]) <= 64
    whole = Events.concatenate(chunks)
    gen = src.generate(counts, seed=9)
    order_a, order_b = np.argsort(row_keys(whole)), np.argsort(row_keys(gen))
    assert_same_events(whole[order_a], gen[order_b])


def test_small_selection_skips_row_groups(source_file, monkeypatch):
    src = ParquetSource(str(source_file))
    src._census()  # the census reads every row group once
    read = []
    original = ParquetSource._read_unit
    monkeypatch.setattr(ParquetSource, "_read_unit",
                        lambda self, u, cols: read.append(u) or original(self, u, cols))
    ev = src.generate({"diboson": 1}, seed=1)
    assert len(ev) == 1 and len(read) == 1 < len(parquet_row_groups(source_file))


def test_source_uses_and_checks_metadata(sample, tmp_path, monkeypatch):
    path = write_parquet(sample, tmp_path / "m.parquet", row_group_size=100)
    src = ParquetSource(str(path))
    monkeypatch.setattr(ParquetSource, "_read_unit", lambda *a: pytest.fail("census ran"))
    per_unit, rows, _ = src._census()
    assert per_unit is None and rows.sum() == len(sample)
    monkeypatch.undo()
    meta = json.loads((tmp_path / "m_metadata.json").read_text())
    meta["total_rows"] = 7
    (tmp_path / "m_metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataFileError, match="m_metadata.json.*total_rows=7"):
        ParquetSource(str(path)).generate({"htautau": 1}, seed=0)


def test_source_errors_and_single_process_files(source_file):
    src = ParquetSource(str(source_file))
    with pytest.raises(ValueError, match="diboson.*only 2"):
        src.generate({"diboson": 3}, seed=0)
    with pytest.raises(ValueError, match="wjets"):
        src.generate({"wjets": 3}, seed=0)
    with pytest.raises(ValueError, match="reweight"):
        ParquetSource(str(source_file), reweight="bogus")
    ttbar = ParquetSource(str(DATA / "ttbar_only.parquet"), process="ttbar", reweight="expected")
    ev = ttbar.generate({"ttbar": 300}, seed=2)
    assert len(ev) == 300 and set(ev.detailed_labels) == {"ttbar"}
    assert ev.sum_weights() == pytest.approx(EXPECTED_EVENTS["ttbar"], rel=1e-9)
    assert all(name in ev for name in PRIMARY + DERIVED)


def test_drawn_rows_are_the_drawn_ranks_of_each_process(sample, source_file):
    """Row selection = sample_ranks(seeded rng) applied to each process's rows in file order,
    so the uniformity of sample_ranks (tested above) carries over to the file sample."""
    counts = {"htautau": 33, "ztautau": 101, "ttbar": 7}
    ev = ParquetSource(str(source_file), reweight="none").generate(counts, seed=21)
    rng = np.random.default_rng(21)
    keys = row_keys(sample)
    got = set(row_keys(ev).tolist())
    expected = set()
    for p in PROCESSES:
        rows = np.flatnonzero(sample.detailed_labels == p)
        k = counts.get(p, 0)
        if 0 < k < len(rows):
            expected |= set(keys[rows[sample_ranks(rng, len(rows), k)]].tolist())
    assert got == expected


# -- metadata belongs to its own file; labels; page checksums ---------------------------
def test_metadata_of_another_file_in_the_folder_is_never_used(sample, tmp_path):
    from workbench.data.io import find_metadata

    write_parquet(sample, tmp_path / "b.parquet")  # writes b_metadata.json
    a = write_parquet(sample[:100], tmp_path / "a.parquet", metadata=False)
    assert find_metadata(a) is None
    src = ParquetSource(str(a))
    assert src.metadata is None
    assert len(src.generate({"htautau": -1}, seed=0)) == int((sample[:100].process == 0).sum())


def test_stale_metadata_with_the_same_row_count_is_an_error_naming_both_files(sample, tmp_path):
    from workbench.data.io import find_metadata

    path = write_parquet(sample, tmp_path / "s.parquet")
    meta = tmp_path / "s_metadata.json"
    assert find_metadata(path) == meta
    shuffled = sample[np.random.default_rng(1).permutation(len(sample))]
    write_parquet(shuffled, path, metadata=False)  # same rows, new content, old metadata
    with pytest.raises(DataFileError) as err:
        find_metadata(path)
    msg = str(err.value)
    assert msg.startswith(f"metadata file {meta} does not describe data file {path}: it was "
                          "written for 500 rows with fingerprint ")
    assert "the file has 500 rows" in msg and "(stale metadata?)" in msg
    assert "ignore_metadata = true" in msg
    with pytest.raises(DataFileError, match="does not describe data file"):
        ParquetSource(str(path))
    assert find_metadata(path, ignore=True) is None  # the switch: do without it
    # the public dataset's metadata has no fingerprint: the row count is checked
    public = json.loads(meta.read_text())
    del public["fingerprint"]
    public["total_rows"] = 499
    meta.write_text(json.dumps(public))
    with pytest.raises(DataFileError, match=rf"{meta} says total_rows=499 but data file "
                                            rf"{path} has 500 rows"):
        read_metadata(meta, data_path=path)


def test_root_metadata_has_a_fingerprint_too(sample, tmp_path):
    from workbench.data.io import check_metadata, find_metadata

    path = write_root(sample, tmp_path / "r.root", metadata=True)
    meta = read_metadata(find_metadata(path))
    assert meta.fingerprint["rows"] == len(sample) and meta.fingerprint["tree"] == "tree"
    write_root(sample[::-1], path)
    with pytest.raises(DataFileError, match="does not describe data file"):
        check_metadata(meta, tmp_path / "r_metadata.json", path)


@pytest.mark.parametrize("bad", [0.5, np.nan, 2.0])
def test_labels_must_be_exactly_0_or_1(sample, tmp_path, bad):
    table = pq.read_table(SAMPLE)
    labels = table.column("labels").to_numpy().copy()
    labels[3] = bad
    table = table.set_column(table.schema.get_field_index("labels"), "labels",
                             pa.array(labels, pa.float32()))
    path = tmp_path / "labels.parquet"
    pq.write_table(table, path)
    with pytest.raises(FileSchemaError) as err:
        read_parquet(path)
    assert str(err.value) == (f"{path}: column 'labels' must hold exactly 0 or 1, but 1 row(s) "
                              f"do not, first row 3 = {np.float32(bad)}")
    with pytest.raises(FileSchemaError, match="must hold exactly 0 or 1"):
        list(iter_parquet(path, batch_size=2))


def test_a_flipped_bit_in_a_data_page_is_an_error_not_a_changed_value(sample, tmp_path):
    path = write_parquet(sample, tmp_path / "crc.parquet", compression="none")
    column = pq.ParquetFile(path).metadata.row_group(0).column(0)
    raw = bytearray(path.read_bytes())
    raw[column.data_page_offset + column.total_compressed_size - 20] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFileError) as err:
        read_parquet(path)
    assert str(err.value) == (
        f"{path}: corrupt or truncated parquet data near row 0 (could not verify page "
        "integrity, CRC checksum verification failed for page_ordinal 0)")


def test_file_sources_switch_to_ignore_stale_metadata(sample, tmp_path):
    path = write_parquet(sample, tmp_path / "s.parquet")
    write_parquet(sample[::-1], path, metadata=False)  # the metadata is now stale
    with pytest.raises(DataFileError, match="does not describe data file"):
        ParquetSource(str(path))
    src = ParquetSource(str(path), ignore_metadata=True)
    assert src.metadata is None and len(src.generate({"ztautau": -1}, seed=0)) == 309
    root = write_root(sample, tmp_path / "r.root", tree="events", metadata=True)
    assert RootSource(str(root), tree="events").metadata.fingerprint["tree"] == "events"
