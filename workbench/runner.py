"""The runner: spec -> data -> training -> pseudo-experiments -> score -> files.

It talks to strategies only through the registry and the protocols, so built-in
and third-party plugins are treated alike.  Randomness comes from the spec seed
through :func:`workbench.seeds.derive_seed`; results.json holds only
deterministic content (timings go to timings.json), so the same spec gives a
byte-identical results file.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .events import Events
from .nuisance import NuisanceParameters, draw_nuisances
from .protocols import Classifier, IntervalResult, IntervalStrategy, Templates, TrainingData
from .registry import PluginError, Registry, get_registry
from .scoring import score
from .seeds import derive_seed
from .spec import Spec


@dataclass
class Pipeline:
    """The trained strategies of one run."""

    data: TrainingData
    pool: Events
    classifier: Classifier | None
    templates: Templates | None
    interval: IntervalStrategy
    timings: dict[str, float] = field(default_factory=dict)
    generator: Any = None
    """Set when PEs are generated fresh (``pseudo_experiments.sampling = "generator"``)."""
    expected: dict[str, float] = field(default_factory=dict)
    """Expected events per process in one PE (the holdout's weight sums)."""


@dataclass
class RunResult:
    spec: Spec
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    timings: dict[str, Any]
    directory: Path | None = None


def _import_core():
    # Late imports keep ``workbench plugins`` and spec validation light.
    from .pseudo_experiments import sample_pseudo_experiment
    from .systematics import apply_systematics

    return apply_systematics, sample_pseudo_experiment


PARTS = ("train", "holdout", "test_pool")


def generate_samples(spec: Spec, registry: Registry) -> dict[str, Events]:
    """Disjoint train, holdout and test-pool samples from one call to the generator.

    One draw, then a seeded split per process: a file source never hands the
    same event to training and to the pseudo-experiments.  Weights are rescaled
    so each part alone still sums to the expected yield per pseudo-experiment.
    """
    from .schema import PROCESSES

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


def train(spec: Spec, registry: Registry | None = None, samples: dict[str, Events] | None = None,
          progress=None) -> Pipeline:
    """Generate data and fit classifier, templates and interval strategy once."""
    registry = registry or get_registry()
    apply_systematics, sample_pseudo_experiment = _import_core()
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
    if template is not None and classifier is None:
        raise PluginError(f"template {spec.template.name!r} needs a [classifier] in the spec")

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    samples = samples or generate_samples(spec, registry)
    timings["generate"] = time.perf_counter() - t0
    holdout = samples["holdout"]
    fixed = spec.fixed_nuisances

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
        fixed=fixed,
    )
    t0 = time.perf_counter()
    if classifier is not None:
        classifier.fit(data)
    timings["classifier_fit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    templates = template.build(data, classifier) if template is not None else None
    timings["template_build"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    interval.fit(data, classifier, templates)
    timings["interval_fit"] = time.perf_counter() - t0
    fresh = None
    if spec.pseudo_experiments.sampling == "generator":
        fresh = registry.create("generator", spec.data.generator.name, spec.data.generator.params)
    return Pipeline(data, samples["test_pool"], classifier, templates, interval, timings,
                    generator=fresh, expected=holdout.sum_weights(by_process=True))


def pe_plan(spec: Spec) -> list[dict[str, Any]]:
    """The (trial, pe, mu_true, NPs, seed) of every pseudo-experiment, from the seed alone."""
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


def evaluate(pipeline: Pipeline, task: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """Draw one pseudo-experiment and infer mu; returns (record, timings)."""
    _, sample_pseudo_experiment = _import_core()
    nps = NuisanceParameters.from_dict(task["nuisances_true"])
    t0 = time.perf_counter()
    if pipeline.generator is not None:
        from .pseudo_experiments import fresh_pseudo_experiment

        pe = fresh_pseudo_experiment(pipeline.generator, pipeline.expected, task["mu_true"],
                                     nps, task["seed"])
    else:
        pe = sample_pseudo_experiment(pipeline.pool, task["mu_true"], nps, task["seed"])
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
    record = json.loads(json.dumps(record, default=_json_default))
    timing.update({f"inference.{k}": v for k, v in result.info.get("timings", {}).items()})
    return record, timing


def summarise(spec: Spec, records: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in records if "error" not in r]
    summary: dict[str, Any] = {"n_pseudo_experiments": len(records), "n_failed": len(records) - len(ok)}
    if ok:
        s = score([r["mu_true"] for r in ok], [r["mu16"] for r in ok], [r["mu84"] for r in ok],
                  [r["mu_hat"] for r in ok], eps=spec.scoring.eps,
                  one_sigma=spec.scoring.confidence_level)
        summary.update(s.as_dict())
    return summary


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (temp file + rename): a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True, default=_json_default) + "\n")
    os.replace(tmp, path)


CHECKPOINT = "checkpoint.jsonl"


def spec_digest(spec: Spec) -> str:
    """Digest of the experiment (not of where or how it runs): guards resumption."""
    import hashlib

    text = json.dumps(spec.as_dict(), sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _load_checkpoint(path: Path, digest: str) -> dict[int, tuple[dict, dict]]:
    """Finished PEs of an earlier, interrupted run of the same spec."""
    done: dict[int, tuple[dict, dict]] = {}
    if not path.exists():
        return done
    lines = path.read_text().splitlines()
    if not lines:
        return done
    header = json.loads(lines[0])
    if header.get("spec_digest") != digest:
        raise ValueError(
            f"{path} belongs to another spec (digest {header.get('spec_digest')} != {digest}); "
            "use another output folder or remove it"
        )
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by the interruption: that PE is simply redone
        done[int(entry["index"])] = (entry["record"], entry["timing"])
    return done


def run(spec: Spec, registry: Registry | None = None, output: str | Path | None = None,
        progress: bool | None = None, *, executor: str | None = None,
        workers: int | None = None, scheduler: str | None = None,
        resume: bool = False) -> RunResult:
    """Run a spec end to end and write results.json, timings.json, workspace, plots.

    Every finished PE is appended to ``checkpoint.jsonl``; with ``resume`` an
    interrupted run restarts where it stopped and writes the same results file
    as an uninterrupted one.
    """
    from .executors import execute

    registry = registry or get_registry()
    outdir = Path(output or spec.output.directory)
    outdir.mkdir(parents=True, exist_ok=True)
    show = spec.output.progress if progress is None else progress
    executor = executor or spec.execution.executor
    workers = workers if workers is not None else (spec.execution.workers or None)
    scheduler = scheduler or spec.execution.scheduler
    wall0 = time.perf_counter()
    plan = pe_plan(spec)
    digest = spec_digest(spec)
    ckpt_path = outdir / CHECKPOINT
    done = _load_checkpoint(ckpt_path, digest) if resume else {}
    pipeline = train(spec, registry)
    outcomes: dict[int, tuple[dict, dict]] = dict(done)

    def write_all(final: bool) -> RunResult:
        order = sorted(outcomes)
        records = [outcomes[i][0] for i in order]
        pe_timings = [outcomes[i][1] for i in order]
        summary = summarise(spec, records)
        summary["complete"] = final and len(records) == len(plan)
        results = {
            "workbench_version": __version__,
            "spec": spec.as_dict(),
            "spec_digest": digest,
            "summary": summary,
            "pseudo_experiments": records,
        }
        write_json(outdir / "results.json", results)
        inference = np.array([t["inference"] for t in pe_timings], float)
        inference = inference[np.isfinite(inference)]
        timings = {
            "training": pipeline.timings,
            "per_pe": pe_timings,
            "inference_median_s": float(np.median(inference)) if len(inference) else None,
            "inference_mean_s": float(np.mean(inference)) if len(inference) else None,
            "wall_s": time.perf_counter() - wall0,
            "executor": executor,
            "workers": workers,
            "resumed_pes": len(done),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "platform": platform.platform()},
        }
        write_json(outdir / "timings.json", timings)
        return RunResult(spec, records, summary, timings, outdir)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    todo = [(i, task) for i, task in enumerate(plan) if i not in done]
    mode = "a" if done else "w"
    try:
        with Progress(*columns, disable=not show, transient=False) as bar, \
                open(ckpt_path, mode) as ckpt:
            if mode == "w":
                ckpt.write(json.dumps({"spec_digest": digest, "n": len(plan)}) + "\n")
            task_id = bar.add_task(f"{spec.name}: pseudo-experiments", total=len(plan),
                                   completed=len(done))
            for index, record, timing in execute(pipeline, todo, executor, workers, scheduler):
                outcomes[index] = (record, timing)
                ckpt.write(json.dumps({"index": index, "record": record, "timing": timing},
                                      default=_json_default) + "\n")
                ckpt.flush()
                bar.advance(task_id)
    except BaseException:
        write_all(final=False)  # nothing already computed is lost
        raise
    result = write_all(final=True)
    if spec.output.workspace and pipeline.templates is not None:
        write_json(outdir / "workspace.json", pipeline.templates.workspace(None))
    if spec.output.plots and any("error" not in r for r in result.records):
        from .plots import plot_run

        plot_run(result.records, outdir, confidence_level=spec.scoring.confidence_level)
        from .report import build_report

        build_report(outdir)
    return result


def run_diagnostics(spec: Spec, registry: Registry | None = None,
                    output: str | Path | None = None, only: list[str] | None = None,
                    pipeline: Pipeline | None = None) -> dict[str, Any]:
    """Train the spec's pipeline once and run its ``[[diagnostics]]`` (or ``only``).

    Each report is written to ``<output>/diagnostics/<name>.json`` as soon as it
    is done, so a failing diagnostic does not lose the earlier ones.
    """
    from .protocols import DiagnosticContext

    registry = registry or get_registry()
    outdir = Path(output or spec.output.directory)
    chosen = list(spec.diagnostics)
    if only:
        names = {d.name for d in chosen}
        for name in only:
            if name not in names:
                chosen.append(_strategy_spec(name))
        chosen = [d for d in chosen if d.name in only]
    if not chosen:
        raise PluginError(
            f"no diagnostics to run: add [[diagnostics]] to the spec or name one; installed: "
            f"{', '.join(registry.names('diagnostic')) or '(none)'}"
        )
    diagnostics = [(d.name, registry.create("diagnostic", d.name, d.params)) for d in chosen]
    pipeline = pipeline or train(spec, registry)
    reports: dict[str, Any] = {}
    for name, diagnostic in diagnostics:
        ctx = DiagnosticContext(spec=spec, registry=registry, pipeline=pipeline,
                                output=outdir / "diagnostics",
                                seed=derive_seed(spec.seed, "diagnostic", name))
        t0 = time.perf_counter()
        report = diagnostic.run(ctx)
        reports[name] = report
        write_json(outdir / "diagnostics" / f"{name}.json", report)
        write_json(outdir / "diagnostics" / f"{name}.timing.json",
                   {"seconds": time.perf_counter() - t0})
    return reports


def _strategy_spec(name: str):
    from .spec import StrategySpec

    return StrategySpec(name)
