"""The runner: spec -> trained pipeline -> every planned PE -> score -> files.

results.json holds only deterministic content (timings go to timings.json), so
the same spec gives a byte-identical results file; every finished PE is in the
checkpoint first, so an interrupted run loses nothing.

The output folder is locked while the run writes it (:class:`workbench.run.folder.RunLock`);
a folder holding an earlier run's checkpoint is only continued (``resume``) or
started again (``overwrite``), never silently replaced.  The trained pipeline
is cached in the folder, so resuming does not train again.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench._version import __version__
from workbench.errors import ExecutorError, RunFolderError, WorkbenchError
from workbench.outputs.files import write_json
from workbench.pipeline import FLAGS, Pipeline, train
from workbench.plugin.registry import Registry, get_registry
from workbench.pseudo_experiments import pe_plan
from workbench.run import executors
from workbench.run.checkpoint import (
    CHECKPOINT,
    header_line,
    load_checkpoint,
    open_for_append,
    read_checkpoint,
    record_line,
)
from workbench.run.executors import Executor
from workbench.run.folder import TRAINING_CACHE, RunLock, load_training, save_training
from workbench.scoring import flag_warnings, score
from workbench.spec import Spec, resume_digest, spec_digest

log = logging.getLogger("workbench.run")


@dataclass
class RunResult:
    spec: Spec
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    timings: dict[str, Any]
    directory: Path | None = None


def summarise(spec: Spec, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The score and its parts over the PEs that did not fail.

    ``n_at_bounds`` / ``n_degenerate`` (PEs whose record carries that flag, see
    :data:`workbench.pipeline.FLAGS`) are added only when nonzero, so the
    summary of a sound run is unchanged.
    """
    ok = [r for r in records if "error" not in r]
    summary: dict[str, Any] = {"n_pseudo_experiments": len(records),
                               "n_failed": len(records) - len(ok)}
    for flag in FLAGS:
        n = sum(1 for r in ok if flag in r.get("flags", ()))
        if n:
            summary[f"n_{flag}"] = n
    if ok:
        s = score([r["mu_true"] for r in ok], [r["mu16"] for r in ok], [r["mu84"] for r in ok],
                  [r["mu_hat"] for r in ok], eps=spec.scoring.eps,
                  one_sigma=spec.scoring.confidence_level)
        summary.update(s.as_dict())
    return summary


def _prepare_folder(outdir: Path, ckpt_path: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to discard an earlier run's checkpoint unless asked to."""
    if resume or overwrite or not ckpt_path.exists() or ckpt_path.stat().st_size == 0:
        return
    try:
        header, done, _ = read_checkpoint(ckpt_path)
        what = (f"holds {len(done)} finished pseudo-experiments of an earlier run"
                if header is not None else "holds an earlier run")
        if header is not None and isinstance(header.get("n"), int) and len(done) >= header["n"]:
            what = f"holds a complete earlier run ({len(done)} pseudo-experiments)"
    except WorkbenchError:
        what = "holds an earlier run's checkpoint (with a corrupt header)"
    raise RunFolderError(
        f"output folder {outdir} {what} ({CHECKPOINT}); continue it with --resume, start "
        "again with --overwrite, or choose another folder with -o"
    )


def run(spec: Spec, registry: Registry | None = None, output: str | Path | None = None,
        progress: bool | None = None, *, executor: str | None = None,
        workers: int | None = None, scheduler: str | None = None,
        resume: bool = False, overwrite: bool = False, cache: bool = True,
        connect_timeout: float | None = None) -> RunResult:
    """Run a spec end to end and write results.json, timings.json, workspace, plots.

    Every finished PE is appended to ``checkpoint.jsonl``; with ``resume`` an
    interrupted run restarts where it stopped (with the cached training, when
    ``cache``) and writes the same results file as an uninterrupted one.  A
    folder holding an earlier checkpoint needs ``resume`` or ``overwrite``.
    ``connect_timeout``: seconds a remote dask scheduler is tried (default
    :data:`workbench.run.executors.CONNECT_TIMEOUT_S`).
    """
    if resume and overwrite:
        raise RunFolderError("resume and overwrite exclude each other: choose one")
    registry = registry or get_registry()
    outdir = Path(output or spec.output.directory)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"cannot create the output folder {outdir}: "
                             f"{exc.strerror or exc}") from None
    show = spec.output.progress if progress is None else progress
    executor = executor or spec.execution.executor
    if scheduler and executor != "dask":
        raise ExecutorError(
            f"--scheduler {scheduler} needs the dask executor, but the executor is "
            f"{executor!r}: add --executor dask, or drop --scheduler"
        )
    scheduler = scheduler or (spec.execution.scheduler if executor == "dask" else None)
    workers = workers if workers is not None else (spec.execution.workers or None)
    with RunLock(outdir):
        return _run_locked(spec, registry, outdir, show, executor, workers, scheduler,
                           resume=resume, overwrite=overwrite, cache=cache,
                           connect_timeout=connect_timeout if connect_timeout is not None
                           else executors.CONNECT_TIMEOUT_S)


def _run_locked(spec: Spec, registry: Registry, outdir: Path, show: bool, executor: str,
                workers: int | None, scheduler: str | None, *, resume: bool, overwrite: bool,
                cache: bool, connect_timeout: float) -> RunResult:
    wall0 = time.perf_counter()
    plan = pe_plan(spec)
    digest = spec_digest(spec)
    rdigest = resume_digest(spec)
    ckpt_path = outdir / CHECKPOINT
    _prepare_folder(outdir, ckpt_path, resume=resume, overwrite=overwrite)
    done = load_checkpoint(ckpt_path, rdigest, digest) if resume else {}
    header = header_line(rdigest, len(plan), digest)
    if not resume:
        (outdir / TRAINING_CACHE).unlink(missing_ok=True)

    with Executor(executor, workers, scheduler, connect_timeout=connect_timeout) as pool:
        pipeline: Pipeline | None = None
        cached = False
        if resume and cache:
            pipeline = load_training(outdir, rdigest)
            cached = pipeline is not None
        if pipeline is None:
            # the folder is claimed before the long training: a kill there keeps its header
            open_for_append(ckpt_path, header, done).close()
            pipeline = train(spec, registry, output=outdir, for_pseudo_experiments=True)
            if cache:  # the strategies and the PE source, not the training samples
                save_training(outdir, rdigest, pipeline.without_training_samples())
        if pipeline.degenerate:
            log.warning("degenerate templates: %s; every interval will be flagged",
                        pipeline.degenerate)
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
                "training_cached": cached,
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

        from rich.console import Console
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
        try:
            with Progress(*columns, disable=not show, transient=False,
                          console=Console(stderr=True)) as bar, \
                    open_for_append(ckpt_path, header, done) as ckpt:
                task_id = bar.add_task(f"{spec.name}: pseudo-experiments", total=len(plan),
                                       completed=len(done))
                for index, record, timing in pool.map(pipeline, todo):
                    outcomes[index] = (record, timing)
                    ckpt.write(record_line(index, record, timing))
                    ckpt.flush()
                    bar.advance(task_id)
        except BaseException as exc:
            write_all(final=False)  # nothing already computed is lost
            exc.add_note(f"{len(outcomes)} of {len(plan)} pseudo-experiments are saved in "
                         f"{outdir}; continue with --resume")
            raise
    result = write_all(final=True)
    for line in flag_warnings(result.summary):
        log.warning("%s", line)
    if spec.output.workspace and pipeline.templates is not None:
        write_json(outdir / "workspace.json", pipeline.templates.workspace(None))
    if spec.output.plots and any("error" not in r for r in result.records):
        from workbench.outputs.plots import plot_run
        from workbench.outputs.report import build_report

        plot_run(result.records, outdir, confidence_level=spec.scoring.confidence_level)
        build_report(outdir)
    return result


__all__ = ["RunResult", "flag_warnings", "run", "summarise"]
