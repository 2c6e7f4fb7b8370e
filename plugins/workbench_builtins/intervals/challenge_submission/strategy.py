"""The ``challenge-submission`` interval strategy: an organisers'-format submission,
unmodified, as a workbench strategy.

``fit`` imports the folder's ``model.py`` in isolation, builds
``Model(get_train_set=..., systematics=...)`` on the run's training sample and the
workbench engine, and calls ``Model.fit()`` once; ``predict`` hands each
pseudo-experiment to ``Model.predict`` as ``{"data": DataFrame, "weights": ones}``
and maps the returned dict (``mu_hat``, ``delta_mu_hat``, ``p16``, ``p84``, extra
keys kept) to an :class:`~workbench.IntervalResult`.

Everything the submission prints goes to ``submission-<name>/output.log`` in the
run folder, with one traceback file per failure next to it.  A pseudo-experiment
on which ``predict`` raises, or answers with a missing, malformed or non-finite
value, is a failed PE (an error in its record, never a NaN in the score).

Executors: ``processes`` forks the trained pipeline (the model is shared, nothing
is pickled); ``dask`` pickles it, so the fitted Model must pickle (a clear error
says so when it does not).  ``in_process = true`` keeps ``predict`` in the process
that ran ``fit`` under any executor (see :mod:`.remote`).
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import pickle
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench import (
    Classifier,
    Events,
    IntervalResult,
    Templates,
    TrainingData,
    derive_seed,
    resolve_params,
)
from workbench.plugin.registry import PluginError

from .frames import TrainSet, prediction_input, require_pandas, systematics
from .isolation import OutputCapture, SubmissionModules
from .remote import ParentClient, ParentServer

WHERE = "interval 'challenge-submission'"
REQUIRED = ("mu_hat", "delta_mu_hat", "p16", "p84")
"""The keys of the organisers' answer (``compute_result`` reads all four)."""


class SubmissionError(PluginError):
    """A submission failed (import, ``fit``, ``predict`` or its answer); names it."""


@dataclass
class SubmissionParams:
    """Parameters of the ``challenge-submission`` interval strategy."""

    directory: str
    """The submission folder, holding ``model.py`` with ``class Model`` (relative
    paths are taken from the working directory)."""
    environment: dict[str, str] = field(default_factory=dict)
    """Environment variables set while the submission is imported and called
    (e.g. the baseline's ``MODEL_SYST_NAME``)."""
    in_process: bool = False
    """Run ``predict`` in the process that ran ``fit``, also under the processes and
    dask executors (their workers send it their PEs, one at a time): for a fitted
    Model that does not pickle, or that is not safe to use after a fork."""

    def __post_init__(self) -> None:
        path = Path(self.directory).expanduser()
        if not path.is_dir():
            raise ValueError(f"directory {self.directory!r} is not a folder")
        if not (path / "model.py").is_file():
            raise ValueError(f"directory {self.directory!r} has no model.py (a submission "
                             "is a folder with model.py defining class Model)")
        bad = [k for k in self.environment if not k or "=" in k or "\0" in k]
        if bad:
            raise ValueError(f"environment: invalid variable name(s) {bad}")


def _number(value: Any) -> float | None:
    """A real scalar as float, else None (strings, arrays of size > 1, complex...)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        return float(value.reshape(()))
    return None


def _jsonable(value: Any, depth: int = 0) -> Any:
    """An extra answer value as plain JSON (non-finite floats -> None, others repr)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if depth < 4:
        if isinstance(value, np.ndarray) and value.size <= 10_000:
            return _jsonable(value.tolist(), depth + 1)
        if isinstance(value, Mapping):
            return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)) and len(value) <= 10_000:
            return [_jsonable(v, depth + 1) for v in value]
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _alive(pid: int | None, address: str) -> bool:
    """Whether the fitting process still runs and still serves its socket."""
    if pid is None or not os.path.exists(address):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pe_digest(events: Events) -> str:
    """A short name for one pseudo-experiment, from its content (stable across runs)."""
    h = hashlib.blake2b(digest_size=6)
    h.update(str(len(events)).encode())
    for name in ("PRI_had_pt", "PRI_met"):
        if name in events:
            h.update(np.ascontiguousarray(events[name]).tobytes())
    return h.hexdigest()


class ChallengeSubmission:
    """A HiggsML Uncertainty Challenge submission (``model.py``, ``class Model``), unmodified."""

    def __init__(self, params: SubmissionParams | None = None, **overrides: Any):
        self.params = resolve_params(SubmissionParams, params, overrides, WHERE)
        try:
            require_pandas()
        except ImportError as exc:
            raise PluginError(str(exc)) from None
        self.directory = Path(self.params.directory).expanduser().resolve()
        self.name = self.directory.name
        self.label = f"challenge-submission {self.name!r}"
        self.modules = SubmissionModules(self.directory)
        self.model: Any = None
        self.output_dir: Path | None = None
        """Where the log and the tracebacks go: ``<run>/submission-<name>``."""
        self.in_run = False
        self.info: dict[str, Any] = {}
        self._fit_pid: int | None = None
        self._blob: bytes | None = None
        self._pickle_error: str | None = None
        self._server: ParentServer | None = None
        self._client: ParentClient | None = None
        self._lock = threading.RLock()

    # -- paths -------------------------------------------------------------------
    @property
    def log_path(self) -> Path | None:
        """The submission's stdout/stderr (appended by every process that runs it)."""
        return None if self.output_dir is None else self.output_dir / "output.log"

    def _shown(self, path: Path) -> str:
        """A file as named in messages: relative to the run folder inside a run (so
        that results files do not depend on where the run was written)."""
        if self.in_run and self.output_dir is not None:
            return f"{self.output_dir.name}/{path.name} in the run folder"
        return str(path)

    def _traceback_file(self, stage: str, text: str, digest: str | None) -> str:
        assert self.output_dir is not None
        stem = stage.split("(")[0].replace(" ", "-").replace(".", "") or "error"
        path = self.output_dir / (f"{stem}-{digest}.traceback.txt" if digest
                                  else f"{stem}.traceback.txt")
        try:
            path.write_text(text)
        except OSError:
            return "(could not be written)"
        return self._shown(path)

    # -- running the submission's code ------------------------------------------
    @contextmanager
    def _running(self, stage: str, digest: str | None = None) -> Iterator[None]:
        """Submission code: its imports, environment and log; errors name it."""
        if self.output_dir is None:
            self.output_dir = Path(tempfile.mkdtemp(prefix=f"submission-{self.name}-"))
        with self._lock, self.modules.active(self.params.environment), \
                OutputCapture(self.output_dir / "output.log").active():
            print(f"=== {self.label}: {stage}" + (f" (PE {digest})" if digest else ""),
                  flush=True)
            try:
                yield
            except Exception as exc:
                file = self._traceback_file(stage, traceback.format_exc(), digest)
                raise SubmissionError(f"{self.label}: {stage} raised {type(exc).__name__}: "
                                      f"{_first_line(exc)} (traceback: {file})") from exc

    def fit(self, data: TrainingData, classifier: Classifier | None,
            templates: Templates | None) -> None:
        """Import the submission, build its Model and call ``Model.fit()`` once."""
        if data is None:
            raise ValueError(f"{self.label} needs the run's training data")
        if data.output is not None:
            self.output_dir = Path(data.output) / f"submission-{self.name}"
            self.in_run = True
        else:
            self.output_dir = Path(tempfile.mkdtemp(prefix=f"submission-{self.name}-"))
            self.in_run = False
        self.output_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with self._running("import model"):
            module = importlib.import_module("model")
        Model = getattr(module, "Model", None)
        if not isinstance(Model, type):
            raise SubmissionError(f"{self.label}: {self.directory / 'model.py'} defines no "
                                  "class Model")
        train = TrainSet(data.train, derive_seed(data.seed, "challenge-submission", "train"))
        t1 = time.perf_counter()
        with self._running("Model(get_train_set, systematics)"):
            self.model = Model(get_train_set=train, systematics=systematics)
        with self._running("fit()"):
            self.model.fit()
        t2 = time.perf_counter()
        self._fit_pid = os.getpid()
        self._blob = None
        self.info = {"directory": str(self.directory), "log": str(self.log_path),
                     "timings": {"import": t1 - t0, "fit": t2 - t1}}
        if self.params.in_process:
            if self._server is not None:
                self._server.close()
            self._server = ParentServer(self._serve, name=self.label)
            self._client = self._server.client()

    def predict(self, events: Events) -> IntervalResult:
        """``Model.predict`` on one PE, its answer as an interval."""
        if self.model is None and self._blob is None and self._client is None:
            raise SubmissionError(f"{self.label}: predict() called before fit()")
        digest = pe_digest(events)
        t0 = time.perf_counter()
        if self.params.in_process and os.getpid() != self._fit_pid:
            assert self._client is not None
            columns = {name: events[name] for name in events.fields}
            try:
                reply = self._client.call(("predict", columns, digest))
            except (OSError, EOFError) as exc:
                raise SubmissionError(f"{self.label}: lost the process that ran fit() (pid "
                                      f"{self._fit_pid}, in_process = true): "
                                      f"{type(exc).__name__}: {exc}") from exc
            if reply[0] != "ok":
                _, kind, message = reply
                raise (ValueError if kind == "ValueError" else SubmissionError)(message)
            mu_hat, p16, p84, info = reply[1]
        else:
            mu_hat, p16, p84, info = self._predict_here(events, digest)
        info.setdefault("timings", {})["total"] = time.perf_counter() - t0
        return IntervalResult(mu_hat, p16, p84, info=info)

    def _serve(self, request: Any) -> Any:
        """The in-process side of ``in_process``: one worker's PE."""
        try:
            kind, columns, digest = request
            if kind != "predict":
                raise ValueError(f"unknown request {kind!r}")
            events = Events.from_columns(columns, validate=False)
            return ("ok", self._predict_here(events, digest))
        except ValueError as exc:
            return ("error", "ValueError", str(exc))
        except Exception as exc:  # noqa: BLE001 - handed to the worker as a failed PE
            return ("error", type(exc).__name__, str(exc))

    def _predict_here(self, events: Events, digest: str
                      ) -> tuple[float, float, float, dict[str, Any]]:
        self._load_model()
        t0 = time.perf_counter()
        test_set = prediction_input(events)
        t1 = time.perf_counter()
        with self._running("predict()", digest):
            answer = self.model.predict(test_set)
        t2 = time.perf_counter()
        mu_hat, p16, p84, info = self._parse(answer, digest)
        info["timings"] = {"to_pandas": t1 - t0, "predict": t2 - t1}
        return mu_hat, p16, p84, info

    def _parse(self, answer: Any, digest: str) -> tuple[float, float, float, dict[str, Any]]:
        """The organisers' answer dict -> (mu_hat, p16, p84, info); ValueError naming
        the submission and the key when it is missing, malformed or not finite."""
        where = f"{self.label}: predict() (PE {digest})"
        if not isinstance(answer, Mapping):
            raise ValueError(f"{where} returned {type(answer).__name__}, expected a dict with "
                             f"keys {', '.join(REQUIRED)}")
        values: dict[str, float] = {}
        for key in REQUIRED:
            if key not in answer:
                raise ValueError(f"{where} returned no {key!r} (keys: "
                                 f"{', '.join(map(str, answer)) or 'none'})")
            number = _number(answer[key])
            if number is None:
                raise ValueError(f"{where} returned {key}={answer[key]!r} "
                                 f"({type(answer[key]).__name__}), expected a number")
            values[key] = number
        for key in ("mu_hat", "p16", "p84"):
            if not math.isfinite(values[key]):
                raise ValueError(f"{where} returned {key}={values[key]} (not finite): a failed PE")
        if values["p16"] > values["p84"]:
            raise ValueError(f"{where} returned p16={values['p16']} > p84={values['p84']}")
        delta = values["delta_mu_hat"]
        info: dict[str, Any] = {"delta_mu_hat": delta if math.isfinite(delta) else None}
        for key, value in answer.items():
            if key in REQUIRED:
                continue
            name = str(key)
            info["submission_timings" if name == "timings" else name] = _jsonable(value)
        return values["mu_hat"], values["p16"], values["p84"], info

    # -- pickling (the dask executor ships the trained pipeline) -----------------
    def _load_model(self) -> None:
        if self.model is None and self._blob is not None:
            with self._running("unpickling the fitted Model"):
                self.model = pickle.loads(self._blob)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lock"] = None
        state["_server"] = None
        state["model"] = None
        if self.model is not None and not self.params.in_process:
            if self._blob is None:
                try:
                    with self._lock, self.modules.active(self.params.environment):
                        self._blob = pickle.dumps(self.model, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as exc:
                    self._pickle_error = (
                        f"{self.label}: the fitted Model does not pickle "
                        f"({type(exc).__name__}: {_first_line(exc)}), and the dask executor "
                        "sends the trained pipeline to its workers by pickling. Set "
                        "in_process = true in the [interval] params to keep predict() in "
                        "this process, or use --executor processes (fork) or inline")
                    raise SubmissionError(self._pickle_error) from exc
            state["_blob"] = self._blob
        return state

    def __repr__(self) -> str:
        # dask quotes the pipeline's repr when it cannot serialise it: say why there
        return (f"<ChallengeSubmission {self.name!r} ({self.directory})"
                + (f": {self._pickle_error}" if self._pickle_error else "") + ">")

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        if self.params.in_process and self._client is not None and not _alive(
                self._fit_pid, self._client.address):
            # e.g. a training cache loaded by a later run: the model stayed in a process
            # that is gone, so this copy cannot predict (the loader then trains again)
            raise SubmissionError(f"{self.label}: the process that ran fit() (pid "
                                  f"{self._fit_pid}) is gone; with in_process = true the "
                                  "fitted Model lives only there")


__all__ = ["ChallengeSubmission", "SubmissionError", "SubmissionParams", "pe_digest"]
