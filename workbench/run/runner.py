"""The runner: spec -> trained pipeline -> every planned PE -> score -> files.

results.json holds only deterministic content (timings go to timings.json), so
the same spec gives a byte-identical results file; every finished PE is in the
checkpoint first, so an interrupted run loses nothing.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench._version import __version__
from workbench.outputs.files import write_json
from workbench.pipeline import train
from workbench.plugin.registry import Registry, get_registry
from workbench.pseudo_experiments import pe_plan
from workbench.run.checkpoint import (
    CHECKPOINT,
    header_line,
    load_checkpoint,
    record_line,
)
from workbench.run.executors import execute
from workbench.scoring import score
from workbench.spec import Spec, spec_digest


@dataclass
class RunResult:
    spec: Spec
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    timings: dict[str, Any]
    directory: Path | None = None


def summarise(spec: Spec, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The score and its parts over the PEs that did not fail."""
    ok = [r for r in records if "error" not in r]
    summary: dict[str, Any] = {"n_pseudo_experiments": len(records),
                               "n_failed": len(records) - len(ok)}
    if ok:
        s = score([r["mu_true"] for r in ok], [r["mu16"] for r in ok], [r["mu84"] for r in ok],
                  [r["mu_hat"] for r in ok], eps=spec.scoring.eps,
                  one_sigma=spec.scoring.confidence_level)
        summary.update(s.as_dict())
    return summary


def run(spec: Spec, registry: Registry | None = None, output: str | Path | None = None,
        progress: bool | None = None, *, executor: str | None = None,
        workers: int | None = None, scheduler: str | None = None,
        resume: bool = False) -> RunResult:
    """Run a spec end to end and write results.json, timings.json, workspace, plots.

    Every finished PE is appended to ``checkpoint.jsonl``; with ``resume`` an
    interrupted run restarts where it stopped and writes the same results file
    as an uninterrupted one.
    """
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
    done = load_checkpoint(ckpt_path, digest) if resume else {}
    pipeline = train(spec, registry, output=outdir)
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

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    todo = [(i, task) for i, task in enumerate(plan) if i not in done]
    mode = "a" if done else "w"
    try:
        with Progress(*columns, disable=not show, transient=False) as bar, \
                open(ckpt_path, mode) as ckpt:
            if mode == "w":
                ckpt.write(header_line(digest, len(plan)))
            task_id = bar.add_task(f"{spec.name}: pseudo-experiments", total=len(plan),
                                   completed=len(done))
            for index, record, timing in execute(pipeline, todo, executor, workers, scheduler):
                outcomes[index] = (record, timing)
                ckpt.write(record_line(index, record, timing))
                ckpt.flush()
                bar.advance(task_id)
    except BaseException:
        write_all(final=False)  # nothing already computed is lost
        raise
    result = write_all(final=True)
    if spec.output.workspace and pipeline.templates is not None:
        write_json(outdir / "workspace.json", pipeline.templates.workspace(None))
    if spec.output.plots and any("error" not in r for r in result.records):
        from workbench.outputs.plots import plot_run
        from workbench.outputs.report import build_report

        plot_run(result.records, outdir, confidence_level=spec.scoring.confidence_level)
        build_report(outdir)
    return result


__all__ = ["RunResult", "run", "summarise"]
