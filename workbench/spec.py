"""Run specifications: TOML files validated into typed dataclasses.

Unknown keys are errors that list the valid ones (a typo must never silently
fall back to a default); every value is checked for type and range, and the
message names the key path (e.g. ``pseudo_experiments.mu_range``).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from workbench.data.schema import PROCESSES
from workbench.errors import SpecError
from workbench.outputs.files import json_default
from workbench.systematics.nuisance import NP_NAMES, PRIORS, NuisanceParameters, Prior

EXECUTORS = ("inline", "processes", "dask")
"""Where pseudo-experiments can run (see :mod:`workbench.run.executors`)."""


@dataclass(frozen=True)
class StrategySpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    generator: StrategySpec
    train: dict[str, int]
    holdout: dict[str, int]
    test_pool: dict[str, int]
    luminosity_fb: float = 10.0


@dataclass(frozen=True)
class PseudoExperimentSpec:
    trials: int = 10
    per_trial: int = 10
    mu_range: tuple[float, float] = (0.1, 3.0)
    randomise: tuple[str, ...] = NP_NAMES
    fixed: dict[str, float] = field(default_factory=dict)
    sampling: str = "pool"
    """``pool``: Poisson-resample the test pool (the challenge protocol);
    ``generator``: fresh events from the generator for every PE."""


@dataclass(frozen=True)
class ScoringSpec:
    eps: float = 1e-3
    confidence_level: float = 0.6827


@dataclass(frozen=True)
class OutputSpec:
    directory: str = "results"
    plots: bool = True
    workspace: bool = True
    progress: bool = True


@dataclass(frozen=True)
class ExecutionSpec:
    executor: str = "inline"
    workers: int = 0
    """0: one per CPU core."""
    scheduler: str | None = None
    """dask.distributed scheduler address; none starts a LocalCluster."""


@dataclass(frozen=True)
class Spec:
    name: str
    seed: int
    data: DataSpec
    pseudo_experiments: PseudoExperimentSpec
    classifier: StrategySpec | None
    template: StrategySpec | None
    interval: StrategySpec
    priors: dict[str, Prior]
    scoring: ScoringSpec
    output: OutputSpec
    execution: ExecutionSpec = field(default_factory=ExecutionSpec)
    diagnostics: tuple[StrategySpec, ...] = ()
    source: str | None = None

    @property
    def fixed_nuisances(self) -> NuisanceParameters:
        return NuisanceParameters.from_dict(self.pseudo_experiments.fixed)

    def as_dict(self) -> dict[str, Any]:
        """A plain, JSON-friendly echo of the validated spec (for results files)."""

        def conv(obj):
            if hasattr(obj, "__dataclass_fields__"):
                return {f.name: conv(getattr(obj, f.name)) for f in fields(obj)}
            if isinstance(obj, dict):
                return {k: conv(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [conv(v) for v in obj]
            return obj

        out = conv(self)
        out.pop("source", None)
        # where results go is not part of the experiment: keep results files comparable
        out["output"].pop("directory", None)
        # nor is where it runs: every executor gives the same records
        out.pop("execution", None)
        return out


TOP_KEYS = {
    "name", "seed", "data", "pseudo_experiments", "classifier", "template",
    "interval", "priors", "scoring", "output", "execution", "diagnostics",
}


def _check_keys(table: dict, valid: set[str], where: str) -> None:
    unknown = sorted(set(table) - valid)
    if unknown:
        loc = f" in [{where}]" if where else ""
        raise SpecError(
            f"unknown key(s) {', '.join(map(repr, unknown))}{loc}; valid keys: "
            f"{', '.join(sorted(valid))}"
        )


def _get(table: dict, key: str, types, where: str, default=..., check=None):
    path = f"{where}.{key}" if where else key
    if key not in table:
        if default is ...:
            raise SpecError(f"missing required key {path!r}")
        return default
    value = table[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise SpecError(f"{path} must be {_type_names(types)}, got {value!r}")
    if not isinstance(value, types):
        raise SpecError(f"{path} must be {_type_names(types)}, got {value!r}")
    if check is not None:
        problem = check(value)
        if problem:
            raise SpecError(f"{path} {problem}, got {value!r}")
    return value


def _type_names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join({int: "an integer", float: "a number", str: "a string", bool: "true/false",
                        list: "a list", dict: "a table"}.get(t, t.__name__) for t in types)


def _strategy(table: Any, where: str) -> StrategySpec:
    if isinstance(table, str):
        return StrategySpec(table)
    if not isinstance(table, dict):
        raise SpecError(f"[{where}] must be a table with 'name' (and 'params'), got {table!r}")
    _check_keys(table, {"name", "params"}, where)
    name = _get(table, "name", str, where)
    params = _get(table, "params", dict, where, {})
    return StrategySpec(name, dict(params))


def _counts(table: Any, where: str) -> dict[str, int]:
    if not isinstance(table, dict):
        raise SpecError(f"{where} must be a table of process -> number of events")
    _check_keys(table, set(PROCESSES), where)
    out = {}
    for proc in PROCESSES:
        value = _get(table, proc, int, where, 0,
                     check=lambda v: "must be >= -1 (-1 means all)" if v < -1 else None)
        out[proc] = int(value)
    return out


DATA_PARTS = ("train", "holdout", "test_pool")


def _check_all_events(data: DataSpec) -> None:
    """``-1`` (all of a process's events) cannot be split: it must be the only count."""
    for proc in PROCESSES:
        counts = {part: getattr(data, part)[proc] for part in DATA_PARTS}
        if -1 in counts.values() and sum(1 for c in counts.values() if c != 0) > 1:
            given = ", ".join(f"data.{part}.{proc} = {c}" for part, c in counts.items() if c)
            raise SpecError(
                f"{given}: -1 (all events) cannot be mixed with other counts of the same "
                f"process; give explicit counts in every part, or -1 in one part and 0 elsewhere"
            )


def _positive(v):
    return "must be positive" if v <= 0 else None


def parse_spec(raw: dict[str, Any], source: str | None = None) -> Spec:
    """Validate a parsed TOML document into a :class:`Spec`."""
    _check_keys(raw, TOP_KEYS, "")
    name = _get(raw, "name", str, "", "run")
    seed = _get(raw, "seed", int, "", check=lambda v: "must be >= 0" if v < 0 else None)

    d = _get(raw, "data", dict, "")
    _check_keys(d, {"generator", "params", "train", "holdout", "test_pool", "luminosity_fb"}, "data")
    data = DataSpec(
        generator=StrategySpec(_get(d, "generator", str, "data"), dict(_get(d, "params", dict, "data", {}))),
        train=_counts(_get(d, "train", dict, "data"), "data.train"),
        holdout=_counts(_get(d, "holdout", dict, "data"), "data.holdout"),
        test_pool=_counts(_get(d, "test_pool", dict, "data"), "data.test_pool"),
        luminosity_fb=float(_get(d, "luminosity_fb", (int, float), "data", 10.0, check=_positive)),
    )
    _check_all_events(data)

    p = _get(raw, "pseudo_experiments", dict, "", {})
    _check_keys(p, {"trials", "per_trial", "mu_range", "randomise", "fixed", "sampling"},
                "pseudo_experiments")
    where = "pseudo_experiments"
    mu_range = _get(p, "mu_range", list, where, [0.1, 3.0])
    if len(mu_range) != 2 or not all(isinstance(v, (int, float)) for v in mu_range) or not (
        0 <= mu_range[0] <= mu_range[1]
    ):
        raise SpecError(f"{where}.mu_range must be [low, high] with 0 <= low <= high, got {mu_range!r}")
    randomise = _get(p, "randomise", list, where, list(NP_NAMES))
    bad = [r for r in randomise if r not in NP_NAMES]
    if bad:
        raise SpecError(
            f"{where}.randomise has unknown nuisance parameter(s) {bad}; valid: {', '.join(NP_NAMES)}"
        )
    fixed = _get(p, "fixed", dict, where, {})
    _check_keys(fixed, set(NP_NAMES), f"{where}.fixed")
    both = sorted(set(fixed) & set(randomise))
    if both:
        raise SpecError(f"{where}: {both} are both randomised and fixed; choose one")
    try:
        NuisanceParameters.from_dict(fixed)
    except (ValueError, KeyError) as exc:
        raise SpecError(f"{where}.fixed: {exc}") from exc
    pes = PseudoExperimentSpec(
        trials=_get(p, "trials", int, where, 10, check=_positive),
        per_trial=_get(p, "per_trial", int, where, 10, check=_positive),
        mu_range=(float(mu_range[0]), float(mu_range[1])),
        randomise=tuple(n for n in NP_NAMES if n in randomise),
        fixed={k: float(v) for k, v in fixed.items()},
        sampling=_get(p, "sampling", str, where, "pool",
                      check=lambda v: "must be 'pool' or 'generator'" if v not in ("pool", "generator") else None),
    )

    priors = dict(PRIORS)
    for np_name, table in _get(raw, "priors", dict, "", {}).items():
        if np_name not in NP_NAMES:
            raise SpecError(f"[priors] unknown nuisance parameter {np_name!r}; valid: {', '.join(NP_NAMES)}")
        w = f"priors.{np_name}"
        if not isinstance(table, dict):
            raise SpecError(f"[{w}] must be a table")
        _check_keys(table, {"kind", "loc", "scale", "low", "high"}, w)
        base = PRIORS[np_name]
        kind = _get(table, "kind", str, w, base.kind,
                    check=lambda v: "must be 'normal' or 'lognormal'" if v not in ("normal", "lognormal") else None)
        vals = {k: float(_get(table, k, (int, float), w, getattr(base, k))) for k in ("loc", "scale", "low", "high")}
        if vals["scale"] < 0 or vals["low"] > vals["high"]:
            raise SpecError(f"[{w}] needs scale >= 0 and low <= high")
        if vals["low"] < base.low or vals["high"] > base.high:
            raise SpecError(
                f"[{w}] clip range [{vals['low']}, {vals['high']}] exceeds the allowed "
                f"[{base.low}, {base.high}]"
            )
        priors[np_name] = Prior(kind, **vals)

    s = _get(raw, "scoring", dict, "", {})
    _check_keys(s, {"eps", "confidence_level"}, "scoring")
    scoring = ScoringSpec(
        eps=float(_get(s, "eps", (int, float), "scoring", 1e-3, check=lambda v: "must be >= 0" if v < 0 else None)),
        confidence_level=float(_get(s, "confidence_level", float, "scoring", 0.6827,
                                    check=lambda v: "must be in (0, 1)" if not 0 < v < 1 else None)),
    )
    o = _get(raw, "output", dict, "", {})
    _check_keys(o, {"directory", "plots", "workspace", "progress"}, "output")
    output = OutputSpec(
        directory=_get(o, "directory", str, "output", f"results/{name}"),
        plots=_get(o, "plots", bool, "output", True),
        workspace=_get(o, "workspace", bool, "output", True),
        progress=_get(o, "progress", bool, "output", True),
    )
    e = _get(raw, "execution", dict, "", {})
    _check_keys(e, {"executor", "workers", "scheduler"}, "execution")

    execution = ExecutionSpec(
        executor=_get(e, "executor", str, "execution", "inline",
                      check=lambda v: f"must be one of {', '.join(EXECUTORS)}" if v not in EXECUTORS else None),
        workers=_get(e, "workers", int, "execution", 0, check=lambda v: "must be >= 0" if v < 0 else None),
        scheduler=_get(e, "scheduler", str, "execution", None),
    )
    if execution.scheduler is not None and execution.executor != "dask":
        raise SpecError(
            f"execution.scheduler is set ({execution.scheduler!r}) but execution.executor is "
            f"{execution.executor!r}; a scheduler is only used by executor = \"dask\""
        )
    diags = _get(raw, "diagnostics", list, "", [])
    diagnostics = tuple(_strategy(d, f"diagnostics[{i}]") for i, d in enumerate(diags))
    return Spec(
        name=name,
        seed=seed,
        data=data,
        pseudo_experiments=pes,
        classifier=_strategy(raw["classifier"], "classifier") if "classifier" in raw else None,
        template=_strategy(raw["template"], "template") if "template" in raw else None,
        interval=_strategy(_get(raw, "interval", (dict, str), ""), "interval"),
        priors=priors,
        scoring=scoring,
        output=output,
        execution=execution,
        diagnostics=diagnostics,
        source=source,
    )


def spec_digest(spec: Spec) -> str:
    """Digest of the spec as echoed in ``results.json`` (written there as ``spec_digest``)."""
    text = json.dumps(spec.as_dict(), sort_keys=True, default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


RESUME_IGNORED = ("output",)
"""Spec sections that cannot change a pseudo-experiment's record: where the files
go, whether plots, the workspace and a progress bar are written (``[execution]``
is already left out of :meth:`Spec.as_dict`)."""


def resume_digest(spec: Spec) -> str:
    """Digest of what decides the records: the checkpoint and training-cache guard.

    Unlike :func:`spec_digest` it leaves out :data:`RESUME_IGNORED`, so a run can
    be resumed with other output settings, on another executor or with other
    workers, but never with another experiment.
    """
    echo = spec.as_dict()
    for key in RESUME_IGNORED:
        echo.pop(key, None)
    text = json.dumps(echo, sort_keys=True, default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _apply_override(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """``a.b.c = value`` into the parsed TOML, naming the key when a parent is no table."""
    *parents, last = dotted.split(".")
    if not dotted or not last or any(not k for k in parents):
        raise SpecError(f"--set {dotted}={value!r}: the key must be a dotted path such as "
                        "pseudo_experiments.trials")
    table = raw
    for depth, key in enumerate(parents):
        child = table.setdefault(key, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: depth + 1])
            raise SpecError(
                f"--set {dotted}: {where!r} is {child!r}, not a table, so it has no key "
                f"{'.'.join(parents[depth + 1:] + [last])!r}; set {where} itself"
            )
        table = child
    table[last] = value


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> Spec:
    """Read and validate a TOML spec; ``overrides`` are dotted keys (``a.b = v``)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"spec file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"spec file {str(path)!r} is not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"spec file {str(path)!r} cannot be read: {exc}") from None
    for dotted, value in (overrides or {}).items():
        _apply_override(raw, dotted, value)
    try:
        return parse_spec(raw, source=str(path))
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
