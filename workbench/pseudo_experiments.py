"""Pseudo-experiments: Poisson resampling of a labelled event pool, then systematics.

Protocol of the challenge's evaluation (docs/concepts.md, "The pseudo-experiment protocol"): every pool event gets a
count ``k ~ Poisson(norm_process * weight)`` with ``norm`` = ``mu`` (htautau),
``bkg_scale`` (ztautau), ``ttbar_scale * bkg_scale`` (ttbar) and
``diboson_scale * bkg_scale`` (diboson); rows are repeated ``k`` times and shuffled;
then ``tes``/``jes``/``soft_met`` are applied with thresholds.  The weight scales
are *not* applied again: they already went into the Poisson means.  The result is
labelled (truth kept for diagnostics) with unit weights; strip the truth with
``Events.without_truth()`` before handing it to an inference strategy.

Randomness: one ``np.random.Generator(PCG64(seed))`` drives the counts, the shuffle
and the seed of the soft-MET smearing, so a seed fixes the whole pseudo-experiment.
(The reference's ``generate_pseudo_exp_data`` smears every pseudo-experiment with
the same default seed 31415; here each seed gets its own smearing.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import awkward as ak
import numpy as np

from workbench.data.events import PROCESS, WEIGHTS, Events, SchemaError
from workbench.data.schema import FEATURES, PRIMARY, PROCESSES, SIGNAL
from workbench.errors import PseudoExperimentError
from workbench.seeds import derive_seed
from workbench.systematics.engine import (
    _as_nps,
    nominal_weight_scales,
    systematics_columns,
    weight_scale_factors,
)
from workbench.systematics.nuisance import NP_NAMES, NuisanceParameters, draw_nuisances

if TYPE_CHECKING:
    from workbench.plugin.protocols import Generator
    from workbench.spec import Spec


def process_norms(mu: float, nps: NuisanceParameters) -> np.ndarray:
    """Poisson-mean multipliers per process code: the weight scales with ``mu`` for signal."""
    if not np.isfinite(mu) or mu < 0:
        raise ValueError(f"signal strength mu={mu!r} must be finite and >= 0")
    norms = weight_scale_factors(nps)
    norms[PROCESSES.index(SIGNAL)] = float(mu)
    return norms


def sample_counts(
    pool: Events, mu: float, nps: NuisanceParameters, rng: np.random.Generator
) -> np.ndarray:
    """Per-pool-event Poisson counts (int64) for one pseudo-experiment."""
    if not pool.is_labelled:
        raise SchemaError(
            f"the pseudo-experiment pool needs the '{PROCESS}' column (detailed_labels) "
            "to normalise each process; got an unlabelled sample"
        )
    lam = process_norms(mu, _as_nps(nps))[pool.process.astype(np.intp)] * pool.weights
    return rng.poisson(lam)


def sample_pseudo_experiment(
    pool: Events, mu: float, nps: NuisanceParameters, seed: int
) -> Events:
    """One pseudo-experiment from ``pool`` at signal strength ``mu`` and NPs ``nps``.

    Returns a labelled sample with unit weights (see the module docstring).
    An empty ``pool`` raises :class:`workbench.errors.PseudoExperimentError`.
    """
    if len(pool) == 0:
        raise PseudoExperimentError(
            "cannot draw a pseudo-experiment from an empty pool (0 events); PEs of a run "
            "come from data.test_pool (sampling 'pool') or the generator (sampling "
            "'generator'): use Pipeline.pseudo_experiment(task)"
        )
    nps = _as_nps(nps)
    rng = np.random.default_rng(seed)
    counts = sample_counts(pool, mu, nps, rng)
    rows = np.repeat(np.arange(len(pool), dtype=np.int64), counts)
    rng.shuffle(rows)
    smear_seed = int(rng.integers(0, 2**32, dtype=np.uint64))

    # Only primaries are gathered: the DER_ features are recomputed anyway.
    primaries = {name: pool[name][rows] for name in PRIMARY}
    features, keep = systematics_columns(
        primaries, nominal_weight_scales(nps), smear_seed, thresholds=True
    )
    if keep is not None:
        rows = rows[keep]
    out: dict[str, np.ndarray] = dict(features)
    for name in pool.fields:
        if name in FEATURES:
            continue
        if name == WEIGHTS:
            out[WEIGHTS] = np.ones(len(rows), dtype=np.float64)
        else:
            out[name] = pool[name][rows]
    return Events(ak.Array(out))


def draw_pseudo_experiment(
    pool: Events,
    mu: float,
    seed: int,
    randomise: tuple[str, ...] = NP_NAMES,
) -> tuple[Events, NuisanceParameters]:
    """Draw the NPs as the reference does, then sample the pseudo-experiment.

    The NPs come from ``np.random.RandomState(seed)`` in the order tes, jes,
    soft_met, ttbar, diboson, bkg (see :func:`workbench.systematics.nuisance.draw_nuisances`;
    NPs not in ``randomise`` stay nominal and consume no draw).
    """
    nps = draw_nuisances(np.random.RandomState(seed), tuple(randomise))
    return sample_pseudo_experiment(pool, mu, nps, seed), nps


def fresh_pseudo_experiment(
    generator: Generator,
    expected: dict[str, float],
    mu: float,
    nps: NuisanceParameters,
    seed: int,
) -> Events:
    """A pseudo-experiment of freshly generated events (no finite pool).

    Per process ``N ~ Poisson(norm_process * expected[process])`` new events are
    asked of ``generator`` (e.g. the built-in simulator), then tes/jes/soft_met
    are applied with thresholds.  Unlike resampling a fixed pool, no pool
    fluctuation is shared by all pseudo-experiments, so coverage studies measure
    the method, not the pool.  Returns a labelled sample with unit weights.
    """
    nps = _as_nps(nps)
    rng = np.random.default_rng(seed)
    norms = process_norms(mu, nps)
    counts = {
        proc: int(rng.poisson(norms[code] * expected.get(proc, 0.0)))
        for code, proc in enumerate(PROCESSES)
    }
    gen_seed = int(rng.integers(0, 2**31 - 1))
    smear_seed = int(rng.integers(0, 2**32, dtype=np.uint64))
    events = generator.generate(counts, gen_seed)
    order = rng.permutation(len(events))
    primaries = {name: events[name][order] for name in PRIMARY}
    features, keep = systematics_columns(
        primaries, nominal_weight_scales(nps), smear_seed, thresholds=True
    )
    rows = order if keep is None else order[keep]
    out: dict[str, np.ndarray] = dict(features)
    out[WEIGHTS] = np.ones(len(rows), dtype=np.float64)
    for name in events.fields:
        if name not in FEATURES and name != WEIGHTS:
            out[name] = events[name][rows]
    return Events(ak.Array(out))


def pe_plan(spec: Spec) -> list[dict[str, Any]]:
    """The (trial, pe, mu_true, NPs, seed) of every pseudo-experiment, from the seed alone.

    mu_true is drawn once per trial, the NPs once per PE (in the reference's
    order), so a plan depends on nothing but the spec.
    """
    pes = spec.pseudo_experiments
    lo, hi = pes.mu_range
    plan = []
    for trial in range(pes.trials):
        mu = float(np.random.RandomState(derive_seed(spec.seed, "trial", trial)).uniform(lo, hi))
        for j in range(pes.per_trial):
            seed = derive_seed(spec.seed, "pe", trial, j)
            nps = draw_nuisances(np.random.RandomState(seed), pes.randomise, spec.priors)
            nps = nps.replace(**pes.fixed) if pes.fixed else nps
            plan.append({"trial": trial, "pe": j, "seed": seed, "mu_true": mu,
                         "nuisances_true": nps.as_dict()})
    return plan


def planned_pseudo_experiment(
    task: Mapping[str, Any],
    *,
    pool: Events | None = None,
    generator: Generator | None = None,
    expected: Mapping[str, float] | None = None,
) -> Events:
    """The one draw of a planned pseudo-experiment (``task`` from :func:`pe_plan`).

    Fresh events from ``generator`` (with ``expected`` yields) when given, else a
    resampling of ``pool``.  Every tool that evaluates PEs goes through here, so
    the runner, the workspace export and the studies see the same events.

    A PE with no events is never handed to a strategy: it raises
    :class:`workbench.errors.PseudoExperimentError` naming the PE, the sampling
    mode and the pool.
    """
    nps = NuisanceParameters.from_dict(task["nuisances_true"])
    which = f"pseudo-experiment (trial {task.get('trial')}, pe {task.get('pe')})"
    if generator is not None:
        expected = dict(expected or {})
        events = fresh_pseudo_experiment(generator, expected, task["mu_true"], nps, task["seed"])
        source = (f"sampling 'generator' with {sum(expected.values()):.6g} expected events "
                  "(the holdout's weights)")
    else:
        if pool is None or len(pool) == 0:
            raise PseudoExperimentError(
                f"{which}: sampling 'pool' draws from the test pool, which is "
                f"{'missing' if pool is None else 'empty (0 events)'}; give data.test_pool "
                "events, or use pseudo_experiments.sampling = 'generator'"
            )
        events = sample_pseudo_experiment(pool, task["mu_true"], nps, task["seed"])
        source = f"sampling 'pool' from a test pool of {len(pool)} events"
    if len(events) == 0:
        raise PseudoExperimentError(
            f"{which} has no events ({source}, mu_true={task['mu_true']:.4g}); raise the "
            "pool's or the holdout's expected yields (data.luminosity_fb, the counts)"
        )
    return events


__all__ = [
    "draw_pseudo_experiment",
    "pe_plan",
    "planned_pseudo_experiment",
    "fresh_pseudo_experiment",
    "process_norms",
    "sample_counts",
    "sample_pseudo_experiment",
]
