"""The pipeline on one page: generate samples -> train -> evaluate one pseudo-experiment.

It talks to strategies only through the registry and the protocols, so built-in
and third-party plugins are treated alike.  Randomness comes from the spec seed
through :func:`workbench.seeds.derive_seed`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.events import Events
from workbench.data.schema import PROCESSES
from workbench.outputs.files import json_default
from workbench.plugin.protocols import (
    Classifier,
    Generator,
    IntervalResult,
    IntervalStrategy,
    Templates,
    TrainingData,
)
from workbench.plugin.registry import PluginError, Registry, get_registry
from workbench.pseudo_experiments import planned_pseudo_experiment, sample_pseudo_experiment
from workbench.seeds import derive_seed
from workbench.spec import Spec
from workbench.systematics.engine import apply_systematics
from workbench.systematics.nuisance import NuisanceParameters

PARTS = ("train", "holdout", "test_pool")
"""The disjoint samples of one run: training, the templates' holdout, the PE pool."""


@dataclass
class Pipeline:
    """The trained strategies of one run."""

    data: TrainingData
    pool: Events
    classifier: Classifier | None
    templates: Templates | None
    interval: IntervalStrategy
    timings: dict[str, float] = field(default_factory=dict)
    generator: Generator | None = None
    """Set when PEs are generated fresh (``pseudo_experiments.sampling = "generator"``)."""
    expected: dict[str, float] = field(default_factory=dict)
    """Expected events per process in one PE (the holdout's weight sums)."""

    def pseudo_experiment(self, task: dict[str, Any]) -> Events:
        """The labelled events of one planned PE (see :func:`workbench.pseudo_experiments.pe_plan`)."""
        return planned_pseudo_experiment(task, pool=self.pool, generator=self.generator,
                                         expected=self.expected)


def generate_samples(spec: Spec, registry: Registry) -> dict[str, Events]:
    """Disjoint train, holdout and test-pool samples from one call to the generator.

    One draw, then a seeded split per process: a file source never hands the
    same event to training and to the pseudo-experiments.  Weights are rescaled
    so each part alone still sums to the expected yield per pseudo-experiment.
    """
    generator = registry.create("generator", spec.data.generator.name, spec.data.generator.params)
    counts = {p: [getattr(spec.data, part)[p] for part in PARTS] for p in PROCESSES}
    for proc, per_part in counts.items():
        if -1 in per_part and sum(1 for c in per_part if c != 0) > 1:
            raise ValueError(
                f"data.*.{proc} = -1 (all events) can only be used in one of "
                f"{', '.join('data.' + p for p in PARTS)}; give explicit counts to split a source"
            )
    total = {p: (-1 if -1 in c else sum(c)) for p, c in counts.items()}
    events = generator.generate(total, derive_seed(spec.seed, "data"))
    lumi = spec.data.luminosity_fb / 10.0
    rng = np.random.default_rng(derive_seed(spec.seed, "data", "split"))
    codes = events.process
    index: dict[str, list[np.ndarray]] = {part: [] for part in PARTS}
    scale = np.zeros(len(events))
    for code, proc in enumerate(PROCESSES):
        rows = rng.permutation(np.flatnonzero(codes == code))
        want = counts[proc]
        if -1 in want:
            want = [len(rows) if c == -1 else 0 for c in want]
        if sum(want) > len(rows):
            raise ValueError(
                f"generator {spec.data.generator.name!r} returned {len(rows)} {proc} events, "
                f"the spec asks for {sum(want)}"
            )
        start = 0
        for part, n in zip(PARTS, want):
            chosen = rows[start:start + n]
            start += n
            index[part].append(chosen)
            # each part alone represents one pseudo-experiment's expected yield
            scale[chosen] = sum(want) / n if n else 0.0
    weights = events.weights * scale * lumi
    events = events.with_columns(weights=weights)
    return {part: events[np.sort(np.concatenate(index[part]))] for part in PARTS}


def train(spec: Spec, registry: Registry | None = None,
          samples: dict[str, Events] | None = None, output: Path | None = None) -> Pipeline:
    """Generate data and fit classifier, templates and interval strategy once.

    ``output``: the run's folder, handed to the strategies (``TrainingData.output``).
    """
    registry = registry or get_registry()
    # Fail on unknown strategies/parameters before any expensive work.
    classifier = (
        registry.create("classifier", spec.classifier.name, spec.classifier.params)
        if spec.classifier else None
    )
    template = (
        registry.create("template", spec.template.name, spec.template.params)
        if spec.template else None
    )
    interval = registry.create("interval", spec.interval.name, spec.interval.params)
    if spec.template is not None and classifier is None:
        raise PluginError(f"template {spec.template.name!r} needs a [classifier] in the spec")

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    samples = samples or generate_samples(spec, registry)
    timings["generate"] = time.perf_counter() - t0
    holdout = samples["holdout"]

    def training_pe(mu: float, nps: NuisanceParameters, seed: int) -> Events:
        return sample_pseudo_experiment(holdout, mu, nps, seed)

    data = TrainingData(
        train=samples["train"],
        holdout=holdout,
        apply_systematics=apply_systematics,
        sample_pseudo_experiment=training_pe,
        priors=spec.priors,
        randomised=spec.pseudo_experiments.randomise,
        mu_range=spec.pseudo_experiments.mu_range,
        seed=derive_seed(spec.seed, "training"),
        confidence_level=spec.scoring.confidence_level,
        fixed=spec.fixed_nuisances,
        registry=registry,
        output=output,
    )
    t0 = time.perf_counter()
    if classifier is not None:
        classifier.fit(data)
    timings["classifier_fit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    templates = (template.build(data, classifier)
                 if template is not None and classifier is not None else None)
    timings["template_build"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    interval.fit(data, classifier, templates)
    timings["interval_fit"] = time.perf_counter() - t0
    fresh = None
    if spec.pseudo_experiments.sampling == "generator":
        fresh = registry.create("generator", spec.data.generator.name, spec.data.generator.params)
    return Pipeline(data, samples["test_pool"], classifier, templates, interval, timings,
                    generator=fresh, expected=holdout.sum_weights(by_process=True))


def evaluate(pipeline: Pipeline, task: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """Draw one pseudo-experiment and infer mu; returns (record, timings)."""
    t0 = time.perf_counter()
    pe = pipeline.pseudo_experiment(task)
    t1 = time.perf_counter()
    result: IntervalResult = pipeline.interval.predict(pe.without_truth())
    t2 = time.perf_counter()
    record = dict(task)
    record.update(
        n_events=len(pe),
        n_signal=int((pe.labels == 1).sum()),
        mu_hat=result.mu_hat,
        mu16=result.mu16,
        mu84=result.mu84,
        covered=bool(result.mu16 <= task["mu_true"] <= result.mu84),
        nuisances_fit=dict(result.nuisances),
        nuisance_errors=dict(result.nuisance_errors),
        info={k: v for k, v in result.info.items() if k != "timings"},
    )
    timing = {"sample": t1 - t0, "inference": t2 - t1}
    # round-trip through JSON now so that fresh and resumed records are identical
    record = json.loads(json.dumps(record, default=json_default))
    timing.update({f"inference.{k}": v for k, v in result.info.get("timings", {}).items()})
    return record, timing


__all__ = ["PARTS", "Pipeline", "evaluate", "generate_samples", "train"]
