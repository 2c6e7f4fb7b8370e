"""Streamed template filling: chunked == in-memory, dask == serial."""

import numpy as np
import pytest

from workbench.data.io.parquet import write_parquet
from workbench.data.streaming import (
    empty_histogram,
    fill_histograms,
    fill_histograms_dask,
    iter_row_groups,
)
from workbench.plugin.registry import build_registry
from workbench.systematics.engine import apply_systematics
from workbench.systematics.nuisance import NuisanceParameters

EDGES = np.linspace(0, 1, 11)
VARIATIONS = {
    "nominal": NuisanceParameters(),
    "tes_up": NuisanceParameters(tes=1.01),
    "smeared": NuisanceParameters(soft_met=1.0, jes=0.99),
}


def visible_mass_score(events):
    """A fixed, picklable 'classifier': a logistic in the visible mass."""
    return 1.0 / (1.0 + np.exp(-(events["DER_mass_vis"] - 100.0) / 15.0))


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory):
    sim = build_registry().create("generator", "simulator")
    events = sim.generate({"htautau": 3000, "ztautau": 20000, "ttbar": 3000, "diboson": 1000}, 4)
    path = tmp_path_factory.mktemp("stream") / "events.parquet"
    write_parquet(events, path, row_group_size=4000)
    return path, events


def _same(a, b, rel=1e-9):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name].values(), b[name].values(), rtol=rel, atol=1e-9)
        np.testing.assert_allclose(a[name].variances(), b[name].variances(), rtol=rel, atol=1e-9)


def test_streaming_equals_in_memory_without_smearing(sample_file):
    path, events = sample_file
    variations = {k: v for k, v in VARIATIONS.items() if v.soft_met == 0}
    streamed = fill_histograms(iter_row_groups(path), visible_mass_score, variations, EDGES, 1)
    for name, nps in variations.items():
        shifted = apply_systematics(events, nps, 1)
        h = empty_histogram(EDGES)
        h.fill(score=np.clip(visible_mass_score(shifted), 0, np.nextafter(1, 0)),
               process=shifted.process, weight=shifted.weights.astype(np.float32).astype(float))
        # the file stores float32 weights, as the public dataset does
        np.testing.assert_allclose(streamed[name].values(), h.values(), rtol=1e-6)
    assert streamed["nominal"].values().sum() > 0


def test_dask_partitions_equal_serial_stream(sample_file):
    path, _ = sample_file
    serial = fill_histograms(iter_row_groups(path), visible_mass_score, VARIATIONS, EDGES, 7)
    threaded = fill_histograms_dask(path, visible_mass_score, VARIATIONS, EDGES, 7)
    _same(serial, threaded)


def test_dask_distributed_cluster_equals_serial(sample_file):
    distributed = pytest.importorskip("distributed")
    path, _ = sample_file
    serial = fill_histograms(iter_row_groups(path), visible_mass_score, VARIATIONS, EDGES, 7)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        clustered = fill_histograms_dask(path, visible_mass_score, VARIATIONS, EDGES, 7, client)
    _same(serial, clustered)


def test_empty_stream_is_an_error():
    with pytest.raises(ValueError, match="stream was empty"):
        fill_histograms([], visible_mass_score, VARIATIONS, EDGES, 1)
