"""The pipeline on one page: generate samples -> train -> evaluate one pseudo-experiment.

It talks to strategies only through the registry and the protocols, so built-in
and third-party plugins are treated alike.  Randomness comes from the spec seed
through :func:`workbench.seeds.derive_seed`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.events import Events, SchemaError
from workbench.data.schema import PROCESSES
from workbench.errors import DataError, SpecError, WorkbenchError
from workbench.outputs.files import json_default
from workbench.plugin.protocols import (
    Classifier,
    DescribedTemplates,
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

AT_BOUNDS = "at_bounds"
DEGENERATE = "degenerate"
FLAGS = (AT_BOUNDS, DEGENERATE)
"""Record flags (``record["flags"]``, present only when one is raised), counted in
the summary as ``n_at_bounds`` / ``n_degenerate``:

* ``at_bounds``: the interval ends at a limit of the fit's parameter range rather
  than where the likelihood puts it.  Raised when the strategy's
  ``IntervalResult.info`` has ``at_bounds`` true, or ``mu84_at_bound`` true, or
  ``mu16_at_bound`` true with ``mu16 > 0`` (a lower end at the physical boundary
  ``mu = 0`` is a legitimate one-sided interval, not a truncation).
* ``degenerate``: the model the interval came from is empty or all-zero (no
  bins, no expected events, or a sample that is zero in every bin; checked once
  after training, :func:`template_problem`), or ``info["degenerate"]`` is true,
  or the templates' ``metadata["degenerate"]`` is true.
"""


@dataclass(frozen=True)
class HoldoutPseudoExperiments:
    """``TrainingData.sample_pseudo_experiment``: PEs drawn from the holdout (picklable)."""

    holdout: Events

    def __call__(self, mu: float, nps: NuisanceParameters, seed: int) -> Events:
        return sample_pseudo_experiment(self.holdout, mu, nps, seed)


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
    degenerate: str | None = None
    """Why the templates cannot measure mu (see :data:`FLAGS`), or None."""

    def pseudo_experiment(self, task: dict[str, Any]) -> Events:
        """The labelled events of one planned PE (see :func:`workbench.pseudo_experiments.pe_plan`)."""
        return planned_pseudo_experiment(task, pool=self.pool, generator=self.generator,
                                         expected=self.expected)

    @property
    def sampling(self) -> str:
        """How PEs are drawn, in words (for messages)."""
        if self.generator is not None:
            return f"sampling 'generator' ({sum(self.expected.values()):.6g} expected events)"
        return f"sampling 'pool' from a test pool of {len(self.pool)} events"

    def without_training_samples(self) -> Pipeline:
        """This pipeline with ``data.train`` / ``data.holdout`` emptied: all that the
        pseudo-experiments need (what the run folder's training cache holds)."""
        empty = self.data.holdout[:0]
        data = dataclasses.replace(self.data, train=self.data.train[:0], holdout=empty,
                                   sample_pseudo_experiment=HoldoutPseudoExperiments(empty))
        return dataclasses.replace(self, data=data)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the registry (plugin modules): only training needs it."""
        state = dict(self.__dict__)
        state["data"] = dataclasses.replace(self.data, registry=None)
        return state


def generate_samples(spec: Spec, registry: Registry) -> dict[str, Events]:
    """Disjoint train, holdout and test-pool samples from one call to the generator.

    One draw, then a seeded split per process: a file source never hands the
    same event to training and to the pseudo-experiments.  Weights are rescaled
    so each part alone still sums to the expected yield per pseudo-experiment.
    """
    name = spec.data.generator.name
    generator = registry.create("generator", name, spec.data.generator.params)
    counts = {p: [getattr(spec.data, part)[p] for part in PARTS] for p in PROCESSES}
    for proc, per_part in counts.items():
        if -1 in per_part and sum(1 for c in per_part if c != 0) > 1:
            raise SpecError(
                f"data.*.{proc} = -1 (all events) can only be used in one of "
                f"{', '.join('data.' + p for p in PARTS)}; give explicit counts to split a source"
            )
    total = {p: (-1 if -1 in c else sum(c)) for p, c in counts.items()}
    try:
        events = generator.generate(total, derive_seed(spec.seed, "data"))
    except (WorkbenchError, SchemaError, FileNotFoundError):
        raise
    except ValueError as exc:  # the source cannot give what the spec asks for
        raise DataError(f"generator {name!r} cannot provide the spec's data "
                        f"({_asked(total)}): {exc}") from exc
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
            asked = " + ".join(f"data.{part}.{proc} = {n}" for part, n in zip(PARTS, want) if n)
            raise DataError(
                f"generator {name!r} has only {len(rows)} {proc} events, but {asked} asks "
                f"for {sum(want)}; lower the counts, or use -1 (all) in one part"
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


def _asked(total: dict[str, int]) -> str:
    return ", ".join(f"{p} {'all' if n == -1 else n}" for p, n in total.items() if n)


def check_samples(spec: Spec, samples: dict[str, Events], *, pseudo_experiments: bool) -> None:
    """Refuse, before any fit, samples too small for the spec.

    The holdout (templates, expected yields) needs events, and signal and
    background events among them; PEs drawn from the test pool (``sampling =
    "pool"``) need a test pool.
    """
    name = spec.data.generator.name
    holdout = samples["holdout"]
    if len(holdout) == 0:
        raise DataError(f"data.holdout is empty (generator {name!r}): the templates and "
                        "expected yields are built from it; give it events")
    if holdout.is_labelled:
        sums = holdout.sum_weights(by_process=True)
        if not sums.get("htautau", 0.0) > 0:
            raise DataError(f"data.holdout has no htautau (signal) events (generator {name!r}): "
                            "mu cannot be measured; give data.holdout.htautau events")
        if not sum(v for k, v in sums.items() if k != "htautau") > 0:
            raise DataError(f"data.holdout has no background events (generator {name!r}); "
                            "give data.holdout ztautau/ttbar/diboson events")
    if pseudo_experiments and spec.pseudo_experiments.sampling == "pool" \
            and len(samples["test_pool"]) == 0:
        raise DataError(
            f"pseudo_experiments.sampling = 'pool' draws PEs from data.test_pool, which is "
            f"empty (generator {name!r}); give data.test_pool events, or use "
            "pseudo_experiments.sampling = 'generator'"
        )


def template_problem(templates: Templates | None) -> str | None:
    """Why a binned model cannot measure mu (empty or all-zero templates), or None.

    Read from the templates' pyhf workspace (Asimov): no bins, no expected events,
    or a sample (the signal, or any background) that is zero in every bin.
    """
    if templates is None:
        return None
    if isinstance(templates, DescribedTemplates) and templates.metadata.get(DEGENERATE):
        return str(templates.metadata[DEGENERATE])
    try:
        ws = templates.workspace(None)
        nbins = 0
        sums: dict[str, float] = {}
        for channel in ws["channels"]:
            for sample in channel["samples"]:
                data = np.abs(np.asarray(sample["data"], float))
                nbins = max(nbins, len(data))
                sums[sample["name"]] = sums.get(sample["name"], 0.0) + float(np.sum(data))
    except Exception:  # noqa: BLE001 - a check only: a template without a pyhf form passes
        return None
    if nbins == 0:
        return "the templates have no bins"
    if not sum(sums.values()) > 0:
        return "the templates expect no events in any bin"
    empty = sorted(name for name, total in sums.items() if not total > 0)
    if empty:
        return (f"the {', '.join(empty)} template{'s are' if len(empty) > 1 else ' is'} zero "
                "in every bin (too few holdout events?)")
    return None


def train(spec: Spec, registry: Registry | None = None,
          samples: dict[str, Events] | None = None, output: Path | None = None, *,
          for_pseudo_experiments: bool = False) -> Pipeline:
    """Generate data and fit classifier, templates and interval strategy once.

    ``output``: the run's folder, handed to the strategies (``TrainingData.output``).
    ``for_pseudo_experiments``: the runner's call; also refuse an empty test pool
    when PEs are drawn from it (:func:`check_samples`), before any fit.
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
    check_samples(spec, samples, pseudo_experiments=for_pseudo_experiments)
    holdout = samples["holdout"]

    data = TrainingData(
        train=samples["train"],
        holdout=holdout,
        apply_systematics=apply_systematics,
        sample_pseudo_experiment=HoldoutPseudoExperiments(holdout),
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
                    generator=fresh, expected=holdout.sum_weights(by_process=True),
                    degenerate=template_problem(templates))


def record_flags(pipeline: Pipeline, result: IntervalResult) -> list[str]:
    """The :data:`FLAGS` raised for one PE's interval."""
    info = result.info
    flags = []
    if info.get(AT_BOUNDS) or info.get("mu84_at_bound") or (
            info.get("mu16_at_bound") and result.mu16 > 0):
        flags.append(AT_BOUNDS)
    if pipeline.degenerate or info.get(DEGENERATE):
        flags.append(DEGENERATE)
    return flags


def evaluate(pipeline: Pipeline, task: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """Draw one pseudo-experiment and infer mu; returns (record, timings)."""
    t0 = time.perf_counter()
    pe = pipeline.pseudo_experiment(task)
    t1 = time.perf_counter()
    try:
        result: IntervalResult = pipeline.interval.predict(pe.without_truth())
    except Exception as exc:
        exc.add_note(f"PE of {len(pe)} events, {pipeline.sampling}")
        raise
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
    flags = record_flags(pipeline, result)
    if flags:  # only when raised: the records of a sound run are unchanged
        record["flags"] = flags
    timing = {"sample": t1 - t0, "inference": t2 - t1}
    # round-trip through JSON now so that fresh and resumed records are identical
    record = json.loads(json.dumps(record, default=json_default))
    timing.update({f"inference.{k}": v for k, v in result.info.get("timings", {}).items()})
    return record, timing


__all__ = ["FLAGS", "PARTS", "HoldoutPseudoExperiments", "Pipeline", "check_samples", "evaluate",
           "generate_samples", "record_flags", "template_problem", "train"]
