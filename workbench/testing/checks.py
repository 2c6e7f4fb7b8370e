"""Conformance checks: does a strategy do what the protocols promise the core?

Each ``check_*`` runs the strategy the way the runner does and raises
:class:`ConformanceError` (an ``AssertionError``, so pytest shows it as a test
failure) naming the rule that failed.  They check behaviour, not only method
names: determinism for a seed, the schema and yields of generated events, scores
that separate signal from background, workspaces that pyhf accepts, a likelihood
whose gradient matches its finite differences, interval results that survive the
JSON round trip of a results file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from workbench.data.events import Events
from workbench.data.schema import EXPECTED_EVENTS, FEATURES, PROCESSES, SIGNAL
from workbench.plugin.protocols import (
    BinnedLikelihood,
    ChunkedGenerator,
    Classifier,
    Generator,
    GradientClassifier,
    IntervalResult,
    IntervalStrategy,
    LikelihoodTemplates,
    Templates,
    TemplateStrategy,
    TrainingData,
)


class ConformanceError(AssertionError):
    """A strategy breaks a rule of its protocol."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConformanceError(message)


def _same_events(a: Events, b: Events) -> bool:
    if len(a) != len(b) or set(a.fields) != set(b.fields):
        return False
    return all(np.array_equal(np.asarray(a[f]), np.asarray(b[f])) for f in a.fields)


# -- generators --------------------------------------------------------------------
def check_generator(generator: Any, counts: Mapping[str, int] | None = None,
                    seed: int = 0) -> Events:
    """A generator: labelled events with every feature, the asked counts, weights per
    process summing to the expected yield, the same events for the same seed (and
    in chunks, if it streams).  Returns the generated events."""
    _require(isinstance(generator, Generator), "a generator needs generate(counts, seed)")
    counts = dict(counts or {"htautau": 300, "ztautau": 600, "ttbar": 200, "diboson": 100})
    events = generator.generate(counts, seed)
    _require(isinstance(events, Events), f"generate() returned {type(events).__name__}, "
                                         "not workbench.Events")
    _require(events.is_labelled, "generated events carry no process labels (detailed_labels)")
    missing = [f for f in FEATURES if f not in events]
    _require(not missing, f"generated events lack feature(s) {missing}")
    for f in FEATURES:
        _require(bool(np.all(np.isfinite(np.asarray(events[f], dtype=float)))),
                 f"feature {f} has non-finite values")
    got = {p: int(np.sum(events.process == i)) for i, p in enumerate(PROCESSES)}
    for proc, n in counts.items():
        _require(got.get(proc, 0) == n, f"asked for {n} {proc} events, got {got.get(proc, 0)}")
    sums = events.sum_weights(by_process=True)
    for proc, n in counts.items():
        if n > 0:
            _require(bool(np.isclose(sums[proc], EXPECTED_EVENTS[proc], rtol=1e-6)),
                     f"{proc} weights sum to {sums[proc]:.6g}, not the expected yield "
                     f"{EXPECTED_EVENTS[proc]:.6g} of one pseudo-experiment")
    _require(_same_events(events, generator.generate(counts, seed)),
             f"generate(counts, seed={seed}) twice gave different events")
    _require(not _same_events(events, generator.generate(counts, seed + 1)),
             "a different seed gave the same events")
    if isinstance(generator, ChunkedGenerator):
        size = max(1, len(events) // 3)
        chunks = list(generator.iter_chunks(counts, seed, size))
        _require(all(len(c) <= size for c in chunks), f"iter_chunks gave a chunk over {size}")
        _require(_same_events(Events.concatenate(chunks), events),
                 "iter_chunks(counts, seed, n) does not give the events of generate(counts, seed)")
    return events


# -- classifiers -------------------------------------------------------------------
def _weighted_auc(score: np.ndarray, signal: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(score, kind="stable")
    s, w = signal[order], weights[order]
    bkg_below = np.cumsum(np.where(s, 0.0, w)) - np.where(s, 0.0, w)
    total_s, total_b = w[s].sum(), w[~s].sum()
    return float(np.sum(w[s] * bkg_below[s]) / (total_s * total_b))


def check_classifier(classifier: Any, data: TrainingData, min_auc: float = 0.6) -> np.ndarray:
    """A classifier: fits on ``data``, scores any events (without truth columns) with
    one finite number each, deterministically, higher for signal (weighted AUC on the
    holdout above ``min_auc``).  Returns the holdout scores."""
    _require(isinstance(classifier, Classifier), "a classifier needs fit(data) and predict(events)")
    classifier.fit(data)
    events = data.holdout.without_truth()
    scores = np.asarray(classifier.predict(events))
    _require(scores.shape == (len(events),),
             f"predict() returned shape {scores.shape}, expected ({len(events)},)")
    _require(bool(np.all(np.isfinite(scores))), "predict() returned non-finite scores")
    _require(np.array_equal(scores, np.asarray(classifier.predict(events))),
             "predict() twice on the same events gave different scores")
    signal = data.holdout.process == PROCESSES.index(SIGNAL)
    auc = _weighted_auc(scores, signal, data.holdout.weights)
    _require(auc > min_auc, f"scores do not rank signal above background (weighted AUC "
                            f"{auc:.3f} <= {min_auc})")
    if isinstance(classifier, GradientClassifier):
        grad = np.asarray(classifier.gradient(events))
        _require(grad.shape == (len(events), len(FEATURES)),
                 f"gradient() shape {grad.shape}, expected ({len(events)}, {len(FEATURES)})")
    return scores


# -- templates ---------------------------------------------------------------------
def _pe(data: TrainingData, mu: float, seed: int) -> Events:
    pe = data.sample_pseudo_experiment(mu, data.fixed, seed)
    _require(isinstance(pe, Events) and len(pe) > 0,
             "data.sample_pseudo_experiment gave no events (is the holdout empty?)")
    return pe


def check_template_strategy(strategy: Any, data: TrainingData, classifier: Classifier
                            ) -> Templates:
    """A template strategy: builds Templates whose observations are bin counts of a PE
    and whose workspaces (Asimov and observed) pyhf accepts with ``poi`` as the POI;
    a likelihood of its own, if it has one, has the observation's size and a gradient
    that matches finite differences.  Returns the templates."""
    import pyhf

    _require(isinstance(strategy, TemplateStrategy), "a template strategy needs build(data, clf)")
    templates = strategy.build(data, classifier)
    _require(isinstance(templates, Templates),
             "build() must return Templates (poi, observations(events), workspace(obs))")
    pe = _pe(data, 1.0, 1).without_truth()
    obs = templates.observations(pe)
    _require(isinstance(obs, Mapping) and len(obs) > 0, "observations() returned no channels")
    total = 0.0
    for channel, counts in obs.items():
        c = np.asarray(counts, dtype=float)
        _require(c.ndim == 1 and bool(np.all(np.isfinite(c))) and bool(np.all(c >= 0)),
                 f"observations()[{channel!r}] must be finite non-negative bin counts")
        total += float(c.sum())
    _require(total <= len(pe) + 1e-6,
             f"observations() count {total:g} events of a {len(pe)}-event pseudo-experiment")
    for label, observations in (("Asimov", None), ("observed", obs)):
        spec = templates.workspace(observations)
        try:
            ws = pyhf.Workspace(spec)
            model = ws.model()
            ws.data(model)
        except Exception as exc:  # noqa: BLE001 - any pyhf rejection is the finding
            raise ConformanceError(f"the {label} workspace is not a valid pyhf workspace: "
                                   f"{exc}") from exc
        _require(model.config.poi_name == templates.poi,
                 f"workspace POI {model.config.poi_name!r} != templates.poi {templates.poi!r}")
    if isinstance(templates, LikelihoodTemplates):
        _check_likelihood(templates.likelihood(), obs)
    return templates


def _check_likelihood(lik: Any, obs: Mapping[str, Any]) -> None:
    _require(isinstance(lik, BinnedLikelihood), "likelihood() must return a BinnedLikelihood")
    _require(list(lik.channels) == [c for c in lik.channels if c in obs],
             f"likelihood channels {list(lik.channels)} are not all in the observations")
    n = np.concatenate([np.asarray(obs[c], dtype=float) for c in lik.channels])
    _require(n.size == lik.nbins, f"likelihood has nbins={lik.nbins}, the observation {n.size}")
    # away from the initial point, where gradients are often near zero
    p = np.asarray(lik.init, dtype=float).copy()
    for i, (lo, hi) in enumerate(lik.bounds):
        if not lik.fixed[i]:
            p[i] = float(np.clip(p[i] + 0.3, lo, hi))
    value = float(lik.nll(p, n, 0.0))
    _require(np.isfinite(value), "nll at init is not finite")
    grad = np.asarray(lik.nll_grad(p, n), dtype=float)
    for i in range(p.size):
        if lik.fixed[i]:
            continue
        lo, hi = lik.bounds[i]
        h = 1e-5 * max(1.0, abs(p[i]))
        a, b = max(lo, p[i] - h), min(hi, p[i] + h)
        up, dn = p.copy(), p.copy()
        up[i], dn[i] = b, a
        fd = (float(lik.nll(up, n, 0.0)) - float(lik.nll(dn, n, 0.0))) / (b - a)
        _require(bool(np.isclose(grad[i], fd, rtol=1e-3, atol=1e-7 * max(1.0, abs(value)))),
                 f"nll_grad[{i}] ({lik.par_names[i]}) = {grad[i]:.6g}, finite differences "
                 f"give {fd:.6g}")


# -- intervals ---------------------------------------------------------------------
def check_interval_strategy(strategy: Any, data: TrainingData,
                            classifier: Classifier | None = None,
                            templates: Templates | None = None,
                            mus: tuple[float, ...] = (0.5, 1.5, 2.5)) -> list[IntervalResult]:
    """An interval strategy: fits once, then for PEs at each ``mu`` returns an
    IntervalResult (finite, ordered) whose record survives JSON, the same result for
    the same events, and fitted NPs as plain floats.  Returns the results."""
    _require(isinstance(strategy, IntervalStrategy),
             "an interval strategy needs fit(data, classifier, templates) and predict(events)")
    strategy.fit(data, classifier, templates)
    results = []
    for k, mu in enumerate(mus):
        pe = _pe(data, mu, 100 + k).without_truth()
        result = strategy.predict(pe)
        _require(isinstance(result, IntervalResult),
                 f"predict() returned {type(result).__name__}, not IntervalResult")
        _require(result.mu16 <= result.mu84, "mu16 > mu84")
        for name, value in {**result.nuisances, **result.nuisance_errors}.items():
            _require(isinstance(value, float) and np.isfinite(value),
                     f"fitted NP {name}={value!r} is not a finite float")
        try:
            json.dumps(result.info, allow_nan=False, default=_json_scalar)
        except (TypeError, ValueError) as exc:
            raise ConformanceError(f"IntervalResult.info is not JSON-serialisable: {exc}") \
                from exc
        again = strategy.predict(pe)
        _require((again.mu_hat, again.mu16, again.mu84) == (result.mu_hat, result.mu16,
                                                           result.mu84),
                 "predict() twice on the same events gave different intervals")
        results.append(result)
    return results


def _json_scalar(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


__all__ = ["ConformanceError", "check_classifier", "check_generator",
           "check_interval_strategy", "check_template_strategy"]
