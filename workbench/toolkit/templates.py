"""Built-in template strategy: binned classifier-score templates as a pyhf model.

Channels: the classifier score, optionally split into categories (jet
multiplicity, transverse-mass regions or user cuts), each its own pyhf channel
with its own binning.  Four samples per channel (``htautau`` scaled by the POI
``mu``; ``ztautau``, ``ttbar``, ``diboson``), filled from the holdout (weights =
one pseudo-experiment's expected yield) with ``hist`` Weight storage, so the MC
statistical uncertainty is known per bin.

Modifiers (only for NPs in ``data.randomised``; fixed NPs stay at their value):

* ``tes``, ``jes`` -- ``histosys`` from the holdout shifted to the prior's
  ``loc +- scale`` (1 +- 0.01); the fit parameter is ``alpha = (tes - 1)/0.01``.
  With ``norm_shape_split`` the yield change becomes a ``normsys`` and the
  shape-only remainder a ``histosys`` of the *same name* (pyhf correlates them:
  one parameter).
* ``soft_met`` -- its prior is LogNormal(0, 1), so the fit parameter is
  ``alpha = ln(soft_met)`` with a unit Gaussian constraint: nominal template at
  soft_met = e^0 = 1 (the median, where PEs are centred), up at e^1, down at
  e^-1 (clipped into the NP's range).
* ``ttbar_scale`` (ttbar), ``diboson_scale`` (diboson), ``bkg_scale`` (all
  backgrounds) -- ``normsys`` with hi/lo = (loc +- scale)/loc, i.e. 1 +- 0.02,
  1 +- 0.25, 1 +- 0.001.
* ``staterror`` -- the holdout's per-bin sqrt(sum w^2), one set per channel.

Variations may be symmetrised, smoothed and pruned (see ``PyhfTemplates``);
every floor, prune and guard decision is recorded in ``templates.metadata``
(pyhf's schema allows no extra keys in the workspace, so ``export_workspace``
writes it to a sidecar file).

All shifted holdouts use the same seed as the nominal one, so the smearing
noise is common and template differences are the systematic effect alone.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from workbench import hookimpl
from workbench.data.events import Events
from workbench.data.schema import PROCESSES, SIGNAL
from workbench.plugin.protocols import Classifier, TrainingData
from workbench.systematics.nuisance import NuisanceParameters

SHAPE_NPS = ("tes", "jes", "soft_met")
NORM_NPS = {
    "ttbar_scale": ("ttbar",),
    "diboson_scale": ("diboson",),
    "bkg_scale": ("ztautau", "ttbar", "diboson"),
}
"""Weight-scale NPs and the samples they multiply."""

BINNINGS = ("equal-signal", "uniform")
SYMMETRISATIONS = ("none", "mirror", "average")
SMOOTHINGS = ("none", "median", "polynomial")
ON_INVALID = ("floor", "raise")
POI = "mu"
NORMSYS_FLOOR = 1e-3
"""Smallest normsys ``lo``/``hi`` written (pyhf needs > 0: it takes logarithms)."""
MT_COLUMN = "DER_mass_transverse_met_lep"
NJETS_COLUMN = "PRI_n_jets"


# -- categories ---------------------------------------------------------------
@dataclass(frozen=True)
class Cut:
    """``low <= events[column] < high`` (a missing side is unbounded)."""

    column: str
    low: float | None = None
    high: float | None = None

    def mask(self, events: Events) -> np.ndarray:
        if self.column not in events:
            raise KeyError(f"pyhf templates: category cut on column {self.column!r}, "
                           f"which the events do not have")
        x = np.asarray(events[self.column], dtype=np.float64)
        m = np.ones(len(x), dtype=bool)
        if self.low is not None:
            m &= x >= self.low
        if self.high is not None:
            m &= x < self.high
        return m


@dataclass(frozen=True)
class Category:
    """A named event selection (AND of cuts); ``cuts = ()`` selects everything."""

    name: str
    cuts: tuple[Cut, ...] = ()

    def mask(self, events: Events) -> np.ndarray:
        m = np.ones(len(events), dtype=bool)
        for cut in self.cuts:
            m &= cut.mask(events)
        return m

    def describe(self) -> str:
        parts = []
        for c in self.cuts:
            lo = f"{c.low:g} <= " if c.low is not None else ""
            hi = f" < {c.high:g}" if c.high is not None else ""
            parts.append(f"{lo}{c.column}{hi}")
        return " and ".join(parts) or "all events"


def _preset(name: str, mt_threshold: float) -> list[Category]:
    njets = [
        Category("0j", (Cut(NJETS_COLUMN, None, 0.5),)),
        Category("1j", (Cut(NJETS_COLUMN, 0.5, 1.5),)),
        Category("2j", (Cut(NJETS_COLUMN, 1.5, None),)),
    ]
    mt = [
        Category("lowmt", (Cut(MT_COLUMN, None, mt_threshold),)),
        Category("highmt", (Cut(MT_COLUMN, mt_threshold, None),)),
    ]
    if name == "njets":
        return njets
    if name == "mt":
        return mt
    if name == "njets-mt":
        return [Category(f"{a.name}_{b.name}", a.cuts + b.cuts)
                for a, b in itertools.product(njets, mt)]
    raise ValueError(f"pyhf templates: categories={name!r}; presets: njets, mt, njets-mt "
                     "(or a list of {name, column, low, high} / {name, cuts} tables)")


def parse_categories(categories, mt_threshold: float = 40.0) -> list[Category] | None:
    """``None`` (one inclusive channel), a preset name or a list of cut tables.

    A table is ``{name, column, low, high}`` or ``{name, cuts = [{column, low, high}, ...]}``.
    """
    if categories is None:
        return None
    if isinstance(categories, str):
        return _preset(categories, mt_threshold)
    out = []
    for i, table in enumerate(categories):
        if not isinstance(table, Mapping) or "name" not in table:
            raise ValueError(f"pyhf templates: categories[{i}] must be a table with 'name', "
                             f"got {table!r}")
        extra = set(table) - {"name", "column", "low", "high", "cuts"}
        if extra:
            raise ValueError(f"pyhf templates: categories[{i}] has unknown key(s) {sorted(extra)}; "
                             "valid: name, column, low, high, cuts")
        raw = list(table.get("cuts", []))
        if "column" in table:
            raw.append({k: table[k] for k in ("column", "low", "high") if k in table})
        cuts = []
        for c in raw:
            if "column" not in c:
                raise ValueError(f"pyhf templates: a cut of category {table['name']!r} lacks 'column'")
            low, high = c.get("low"), c.get("high")
            if low is not None and high is not None and not low < high:
                raise ValueError(f"pyhf templates: category {table['name']!r}: cut on "
                                 f"{c['column']} has low={low} >= high={high}")
            cuts.append(Cut(str(c["column"]), None if low is None else float(low),
                            None if high is None else float(high)))
        out.append(Category(str(table["name"]), tuple(cuts)))
    names = [c.name for c in out]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"pyhf templates: category names must be unique and non-empty, got {names}")
    return out


# -- helpers ------------------------------------------------------------------
def nominal_nuisances(data: TrainingData) -> NuisanceParameters:
    """The NP point PEs are centred on: randomised NPs at the prior median
    (normal: ``loc``; log-normal: ``exp(loc)``, i.e. soft_met = 1), others at
    ``data.fixed``."""
    fixed = getattr(data, "fixed", None) or NuisanceParameters()
    values = fixed.as_dict()
    for name in data.randomised:
        prior = data.priors[name]
        centre = np.exp(prior.loc) if prior.kind == "lognormal" else prior.loc
        values[name] = float(np.clip(centre, prior.low, prior.high))
    return NuisanceParameters(**values)


def np_value(name: str, alpha: float, priors: Mapping) -> float:
    """The NP value at ``alpha`` prior standard deviations (log-normal: in the log),
    clipped into the NP's range."""
    prior = priors[name]
    if prior.kind == "lognormal":
        value = np.exp(prior.loc + alpha * prior.scale)
    elif prior.kind == "normal":
        value = prior.loc + alpha * prior.scale
    else:
        raise ValueError(f"pyhf templates: prior kind {prior.kind!r} of {name!r} is not supported")
    return float(np.clip(value, prior.low, prior.high))


def shape_variation_points(name: str, data: TrainingData) -> tuple[float, float]:
    """(down, up) NP values for the +-1 sigma templates of a shape NP.

    Normal prior: ``loc -+ scale``; log-normal: ``exp(loc -+ scale)`` so the
    interpolation parameter is the log of the NP.  Clipped into the NP's range.
    """
    return np_value(name, -1.0, data.priors), np_value(name, 1.0, data.priors)


def weighted_quantile_edges(scores: np.ndarray, weights: np.ndarray, bins: int,
                            lo: float, hi: float) -> np.ndarray:
    """Bin edges in [lo, hi] with equal weighted signal content per bin.

    Duplicate edges (ties, e.g. a saturated score) are dropped, so fewer bins
    may result; the outer edges are always ``lo`` and ``hi``.
    """
    inside = (scores >= lo) & (scores <= hi) & (weights > 0)
    s, w = scores[inside].astype(np.float64), weights[inside].astype(np.float64)
    if len(s) < bins:
        raise ValueError(
            f"pyhf templates: only {len(s)} signal holdout events inside score_range "
            f"[{lo}, {hi}], fewer than bins={bins}; use binning='uniform' or fewer bins"
        )
    order = np.argsort(s, kind="stable")
    s, w = s[order], w[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    inner = np.interp(np.linspace(0.0, 1.0, bins + 1)[1:-1], cdf, s)
    edges = np.unique(np.concatenate([[lo], inner, [hi]]))
    return edges


def _median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Running median of odd ``width``; the end bins keep shorter (symmetric) windows."""
    half = width // 2
    out = x.copy()
    for i in range(len(x)):
        k = min(half, i, len(x) - 1 - i)
        out[i] = np.median(x[i - k:i + k + 1])
    return out


def smooth_353h(x: np.ndarray) -> np.ndarray:
    """Running medians of 3, 5, 3 then a Hanning (1/4, 1/2, 1/4) pass, applied
    twice ("twicing": the residuals are smoothed and added back).

    This is the core of ROOT's ``TH1::SmoothArray`` (353QH twice) without the
    quadratic-interpolation ("Q") step; it removes bin-to-bin noise while keeping
    monotonic trends.  Arrays shorter than 3 bins are returned unchanged.
    """
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 3:
        return x.copy()

    def once(y):
        y = _median_filter(_median_filter(_median_filter(y, 3), 5), 3)
        z = y.copy()
        z[1:-1] = 0.25 * y[:-2] + 0.5 * y[1:-1] + 0.25 * y[2:]
        return z

    first = once(x)
    return first + once(x - first)


def smooth_polynomial(x: np.ndarray, weights: np.ndarray | None, degree: int) -> np.ndarray:
    """Weighted least-squares polynomial in the bin index (degree capped at nbins - 1)."""
    x = np.asarray(x, dtype=np.float64)
    idx = np.arange(len(x), dtype=np.float64)
    deg = min(int(degree), len(x) - 1)
    if deg < 0:
        return x.copy()
    w = None if weights is None else np.sqrt(np.maximum(weights, 0.0))
    if w is not None and not np.any(w > 0):
        w = None
    coef = np.polynomial.polynomial.polyfit(idx, x, deg, w=w)
    return np.polynomial.polynomial.polyval(idx, coef)


# -- the built model ----------------------------------------------------------
@dataclass
class ChannelTemplates:
    """One pyhf channel: a category, its binning and per-sample templates.

    ``histosys[np][sample] = (lo_data, hi_data)``; ``normsys[np][sample] = (hi, lo)``
    (an NP may have both, one parameter); ``raw[variation]`` holds the unprocessed
    (score x process) values of each variation for diagnostics and plots.
    """

    name: str
    category: Category
    edges: np.ndarray
    hists: dict
    sample_data: dict[str, np.ndarray]
    histosys: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
    normsys: dict[str, dict[str, tuple[float, float]]]
    staterror: dict[str, np.ndarray] | None
    raw: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def nbins(self) -> int:
        return len(self.edges) - 1


class BinnedTemplates:
    """The built templates (follows ``workbench.plugin.protocols.Templates``).

    ``channels`` maps a channel name to its :class:`ChannelTemplates`.  The
    attributes ``channel``, ``edges``, ``hists``, ``sample_data``, ``histosys``,
    ``normsys``, ``staterror`` and ``nbins`` are those of the *first* channel (the
    only one without categories).  ``metadata`` records floors, prunes and
    guard decisions; ``to_physical`` converts a fitted value (alpha -> NP).
    """

    poi = POI

    def __init__(self, *, classifier: Classifier, channels: dict[str, ChannelTemplates],
                 shape_points: dict[str, tuple[float, float, float]],
                 scale_factors: dict[str, tuple[float, float]],
                 priors: Mapping, mu_bounds: tuple[float, float],
                 metadata: dict | None = None) -> None:
        if not channels:
            raise ValueError("pyhf templates: no channels")
        self.classifier = classifier
        self.channels = channels
        self.shape_points = shape_points
        self.scale_factors = scale_factors
        self.priors = dict(priors)
        self.mu_bounds = mu_bounds
        self.metadata = metadata if metadata is not None else {}

    # single-channel view (backwards compatible)
    @property
    def first(self) -> ChannelTemplates:
        return next(iter(self.channels.values()))

    channel = property(lambda self: self.first.name)
    edges = property(lambda self: self.first.edges)
    hists = property(lambda self: self.first.hists)
    sample_data = property(lambda self: self.first.sample_data)
    histosys = property(lambda self: self.first.histosys)
    normsys = property(lambda self: self.first.normsys)
    staterror = property(lambda self: self.first.staterror)
    nbins = property(lambda self: self.first.nbins)

    @staticmethod
    def _fill_edges(edges: np.ndarray, scores: np.ndarray, weights) -> np.ndarray:
        import hist

        lo, hi = edges[0], edges[-1]
        clipped = np.clip(np.asarray(scores, dtype=np.float64), lo, np.nextafter(hi, lo))
        h = hist.Hist(hist.axis.Variable(edges, flow=False), storage=hist.storage.Double())
        h.fill(clipped, weight=weights)
        return h.values()

    def fill(self, scores: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Weighted counts of ``scores`` in the first channel's binning (clipped into range)."""
        return self._fill_edges(self.edges, scores, weights)

    def observations(self, events: Events) -> dict[str, list[float]]:
        """Bin counts per channel of a pseudo-experiment (its weights summed: counts
        for unit weights).  The classifier scores every event once."""
        scores = np.asarray(self.classifier.predict(events), dtype=np.float64)
        weights = events.weights if "weights" in events else None
        out = {}
        for name, ch in self.channels.items():
            m = ch.category.mask(events)
            w = None if weights is None else weights[m]
            out[name] = self._fill_edges(ch.edges, scores[m], w).tolist()
        return out

    def asimov(self) -> list[float] | dict[str, list[float]]:
        """Expected counts at mu = 1, nominal NPs (a list for one channel, else per channel)."""
        per = {n: np.sum(list(ch.sample_data.values()), axis=0).tolist()
               for n, ch in self.channels.items()}
        return next(iter(per.values())) if len(per) == 1 else per

    def to_physical(self, parameter: str, value: float) -> float:
        """A fitted modifier value as the NP it stands for (e.g. alpha -> tes)."""
        if parameter in self.shape_points:
            down, nominal, up = self.shape_points[parameter]
            prior = self.priors[parameter]
            if prior.kind == "lognormal":  # alpha = ln(NP) (interpolation in the log)
                return float(np.exp(np.log(nominal) + value * prior.scale))
            return float(nominal + value * ((up - nominal) if value >= 0 else (nominal - down)))
        if parameter in self.scale_factors:
            hi, lo = self.scale_factors[parameter]
            return float(hi ** value if value >= 0 else lo ** (-value))
        return float(value)

    def _observed(self, observations) -> dict[str, list[float]]:
        if observations is None:
            return {n: np.sum(list(ch.sample_data.values()), axis=0).tolist()
                    for n, ch in self.channels.items()}
        out = {}
        for name, ch in self.channels.items():
            if name not in observations:
                raise KeyError(f"pyhf templates: observations lack channel {name!r} "
                               f"(got {sorted(observations)})")
            data = [float(x) for x in observations[name]]
            if len(data) != ch.nbins:
                raise ValueError(f"pyhf templates: channel {name!r} has {ch.nbins} bins, "
                                 f"observations have {len(data)}")
            if not np.all(np.isfinite(data)) or min(data) < 0:
                bad = int(np.flatnonzero(~(np.isfinite(data) & (np.asarray(data) >= 0)))[0])
                raise ValueError(f"pyhf templates: observation of channel {name!r} bin {bad} "
                                 f"is {data[bad]} (counts must be finite and >= 0)")
            out[name] = data
        return out

    def workspace(self, observations: Mapping[str, Sequence[float]] | None = None) -> dict:
        """The pyhf workspace (schema 1.0.0); ``None`` -> Asimov data (mu = 1, nominal NPs)."""
        observed = self._observed(observations)
        channels = []
        for cname, ch in self.channels.items():
            samples = []
            for name, nominal in ch.sample_data.items():
                modifiers: list[dict] = []
                if name == SIGNAL:
                    modifiers.append({"name": POI, "type": "normfactor", "data": None})
                for np_name, by_sample in ch.histosys.items():
                    if name in by_sample:
                        lo, hi = by_sample[name]
                        modifiers.append({"name": np_name, "type": "histosys",
                                          "data": {"hi_data": hi.tolist(), "lo_data": lo.tolist()}})
                for np_name, by_sample in ch.normsys.items():
                    if name in by_sample:
                        hi, lo = by_sample[name]
                        modifiers.append({"name": np_name, "type": "normsys",
                                          "data": {"hi": float(hi), "lo": float(lo)}})
                if ch.staterror is not None:
                    modifiers.append({"name": f"staterror_{cname}", "type": "staterror",
                                      "data": ch.staterror[name].tolist()})
                samples.append({"name": name, "data": nominal.tolist(), "modifiers": modifiers})
            channels.append({"name": cname, "samples": samples})
        parameters = [{"name": POI, "bounds": [list(self.mu_bounds)], "inits": [1.0]}]
        used = {m["name"] for c in channels for s in c["samples"] for m in s["modifiers"]}
        if "soft_met" in self.shape_points and "soft_met" in used:
            # alpha = ln(soft_met)/scale may not exceed the NP's clip range.
            prior = self.priors["soft_met"]
            top = (np.log(prior.high) - prior.loc) / prior.scale
            parameters.append({"name": "soft_met", "bounds": [[-5.0, float(min(5.0, top))]]})
        return {
            "channels": channels,
            "observations": [{"name": n, "data": observed[n]} for n in self.channels],
            "measurements": [{"name": "measurement",
                              "config": {"poi": POI, "parameters": parameters}}],
            "version": "1.0.0",
        }


# -- the strategy -------------------------------------------------------------
def _per_channel(value, names: list[str], what: str, default):
    """A scalar for every channel, or a ``{category: value}`` table (others: default)."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"pyhf templates: {what} names unknown categories {unknown}; "
                             f"categories: {names}")
        return {n: value.get(n, default) for n in names}
    return {n: value for n in names}


class PyhfTemplates:
    """Classifier-score histograms per category with tes/jes/soft_met histosys
    (optionally split into normsys + shape histosys), scale normsys and staterror.

    Processing of each shape variation, in this order: ``norm_shape_split`` ->
    ``symmetrise`` -> ``smoothing`` -> pruning -> floors.  Defaults reproduce the
    single-channel model without any of these steps.
    """

    def __init__(
        self,
        bins: int | Mapping[str, int] = 20,
        binning: str | Mapping[str, str] = "equal-signal",
        score_range: Sequence[float] = (0.0, 1.0),
        shape_systematics: Sequence[str] = SHAPE_NPS,
        norm_systematics: Sequence[str] = tuple(NORM_NPS),
        staterror: bool = True,
        channel: str = "score",
        min_bin_content: float = 1e-6,
        mu_bounds: Sequence[float] | None = None,
        categories: str | Sequence[Mapping] | None = None,
        mt_threshold: float = 40.0,
        norm_shape_split: bool = False,
        symmetrise: str = "none",
        smoothing: str = "none",
        smoothing_degree: int = 2,
        prune_normsys: float = 0.0,
        prune_shape: float = 0.0,
        on_invalid: str = "floor",
    ) -> None:
        self.categories = parse_categories(categories, float(mt_threshold))
        self.category_names = ([c.name for c in self.categories] if self.categories
                               else [str(channel)])
        names = self.category_names
        self.bins = bins if not isinstance(bins, Mapping) else dict(bins)
        self._bins = _per_channel(bins, names, "bins", 20)
        self._binning = _per_channel(binning, names, "binning", "equal-signal")
        self.binning = binning
        for n in names:
            if self._binning[n] not in BINNINGS:
                raise ValueError(f"pyhf templates: binning={self._binning[n]!r} (channel {n}); "
                                 f"valid: {', '.join(BINNINGS)}")
            if int(self._bins[n]) < 1:
                raise ValueError(f"pyhf templates: bins={self._bins[n]} (channel {n}) must be >= 1")
        lo, hi = (float(x) for x in score_range)
        if not lo < hi:
            raise ValueError(f"pyhf templates: score_range={list(score_range)} must be increasing")
        bad = [n for n in shape_systematics if n not in SHAPE_NPS]
        if bad:
            raise ValueError(f"pyhf templates: shape_systematics {bad} unknown; valid: {SHAPE_NPS}")
        bad = [n for n in norm_systematics if n not in NORM_NPS]
        if bad:
            raise ValueError(
                f"pyhf templates: norm_systematics {bad} unknown; valid: {tuple(NORM_NPS)}"
            )
        if not min_bin_content > 0:
            raise ValueError(f"pyhf templates: min_bin_content={min_bin_content} must be > 0")
        if mu_bounds is not None and not (len(mu_bounds) == 2 and mu_bounds[0] < mu_bounds[1]):
            raise ValueError(f"pyhf templates: mu_bounds={mu_bounds} must be [low, high]")
        for value, valid, what in ((symmetrise, SYMMETRISATIONS, "symmetrise"),
                                   (smoothing, SMOOTHINGS, "smoothing"),
                                   (on_invalid, ON_INVALID, "on_invalid")):
            if value not in valid:
                raise ValueError(f"pyhf templates: {what}={value!r}; valid: {', '.join(valid)}")
        if prune_normsys < 0 or prune_shape < 0:
            raise ValueError("pyhf templates: prune_normsys and prune_shape must be >= 0")
        self.score_range = (lo, hi)
        self.shape_systematics = tuple(shape_systematics)
        self.norm_systematics = tuple(norm_systematics)
        self.staterror = bool(staterror)
        self.channel = str(channel)
        self.min_bin_content = float(min_bin_content)
        self.mu_bounds = tuple(float(x) for x in mu_bounds) if mu_bounds is not None else None
        self.norm_shape_split = bool(norm_shape_split)
        self.symmetrise = symmetrise
        self.smoothing = smoothing
        self.smoothing_degree = int(smoothing_degree)
        self.prune_normsys = float(prune_normsys)
        self.prune_shape = float(prune_shape)
        self.on_invalid = on_invalid

    # -- filling --------------------------------------------------------------
    def channel_categories(self) -> list[Category]:
        return self.categories or [Category(self.channel)]

    @staticmethod
    def _histogram(scores: np.ndarray, process: np.ndarray, weights: np.ndarray,
                   edges: np.ndarray):
        """Score x process histogram (Weight storage)."""
        import hist

        lo, hi = edges[0], edges[-1]
        scores = np.clip(scores, lo, np.nextafter(hi, lo))
        h = hist.Hist(
            hist.axis.Variable(edges, name="score", flow=False),
            hist.axis.IntCategory(list(range(len(PROCESSES))), name="process"),
            storage=hist.storage.Weight(),
        )
        h.fill(score=scores, process=process, weight=weights)
        return h

    def fill_channels(self, classifier: Classifier, events: Events,
                      channels: Mapping[str, tuple[Category, np.ndarray]]) -> dict:
        """``{channel: hist}`` of a labelled sample; the classifier scores it once."""
        scores = np.asarray(classifier.predict(events), dtype=np.float64)
        process, weights = events.process, events.weights
        out = {}
        for name, (category, edges) in channels.items():
            m = category.mask(events)
            out[name] = self._histogram(scores[m], process[m], weights[m], edges)
        return out

    # -- variation processing -------------------------------------------------
    def _process_shape(self, nom: np.ndarray, dn: np.ndarray, up: np.ndarray,
                       stat: np.ndarray | None):
        """(lo_data, hi_data, normsys (hi, lo) or None) after split/symmetrise/smooth."""
        nom, dn, up = (np.asarray(a, dtype=np.float64) for a in (nom, dn, up))
        norm = None
        total = nom.sum()
        if self.norm_shape_split and total > 0:
            hi_f, lo_f = up.sum() / total, dn.sum() / total
            up = up / hi_f if hi_f > 0 else up
            dn = dn / lo_f if lo_f > 0 else dn
            if self.symmetrise == "mirror":
                lo_f = 2.0 - hi_f
            elif self.symmetrise == "average":
                half = 0.5 * (hi_f - lo_f)
                hi_f, lo_f = 1.0 + half, 1.0 - half
            norm = (float(hi_f), float(lo_f))
        if self.symmetrise == "mirror":
            dn = 2.0 * nom - up
        elif self.symmetrise == "average":
            half = 0.5 * (up - dn)
            up, dn = nom + half, nom - half
        if self.smoothing != "none":
            safe = nom > 0
            new = []
            for var in (dn, up):
                ratio = np.where(safe, var / np.where(safe, nom, 1.0), 1.0)
                if self.smoothing == "median":
                    r = smooth_353h(ratio)
                else:
                    w = None
                    if stat is not None:
                        rel = np.where(safe & (stat > 0), stat / np.where(safe, nom, 1.0), np.inf)
                        w = np.where(np.isfinite(rel), 1.0 / np.maximum(rel, 1e-12) ** 2, 0.0)
                    r = smooth_polynomial(ratio, w, self.smoothing_degree)
                sm = np.where(safe, nom * r, var)
                if self.norm_shape_split and sm.sum() > 0:  # keep the shape part norm-free
                    sm = sm * (total / sm.sum())
                new.append(sm)
            dn, up = new
        return dn, up, norm

    def _guard_bins(self, values: np.ndarray, where: str, record: list) -> np.ndarray:
        """Floor non-positive bins at ``min_bin_content`` (recorded) or raise for
        negative ones (``on_invalid="raise"``)."""
        values = np.asarray(values, dtype=np.float64)
        bad = np.flatnonzero(~(values > 0))
        if len(bad):
            negative = bad[values[bad] < 0]
            if len(negative) and self.on_invalid == "raise":
                b = int(negative[0])
                raise ValueError(f"pyhf templates: {where} bin {b} is {values[b]:.6g} < 0 "
                                 "(on_invalid='raise'; use 'floor' to floor it)")
            record.append({"where": where, "bins": bad.tolist(),
                           "values": [float(v) for v in values[bad]],
                           "floored_to": self.min_bin_content})
            if len(negative):
                warnings.warn(f"pyhf templates: {where} has negative bins {negative.tolist()}; "
                              f"floored at {self.min_bin_content}", stacklevel=3)
        return np.maximum(values, self.min_bin_content)

    def _guard_normsys(self, hi: float, lo: float, where: str, record: list):
        out = []
        for tag, v in (("hi", hi), ("lo", lo)):
            if not (np.isfinite(v) and v > NORMSYS_FLOOR):
                if self.on_invalid == "raise":
                    raise ValueError(f"pyhf templates: normsys {where} {tag}={v:.6g} must be "
                                     f"> {NORMSYS_FLOOR} (on_invalid='raise')")
                record.append({"where": f"normsys {where}", tag: float(v),
                               "floored_to": NORMSYS_FLOOR})
                v = NORMSYS_FLOOR if not np.isfinite(v) or v <= NORMSYS_FLOOR else v
            out.append(float(v))
        return out[0], out[1]

    # -- build ----------------------------------------------------------------
    def build(self, data: TrainingData, classifier: Classifier) -> BinnedTemplates:
        if classifier is None:
            raise ValueError("pyhf templates need a classifier (add [classifier] to the spec)")
        holdout = data.holdout
        if not holdout.is_labelled:
            raise ValueError("pyhf templates: data.holdout has no 'process' column")
        seed = int(data.seed) % (2**31 - 1)
        nominal_nps = nominal_nuisances(data)
        nominal = data.apply_systematics(holdout, nominal_nps, seed)
        metadata: dict = {"floored": [], "pruned": [], "channels": {}, "settings": {
            "norm_shape_split": self.norm_shape_split, "symmetrise": self.symmetrise,
            "smoothing": self.smoothing, "prune_normsys": self.prune_normsys,
            "prune_shape": self.prune_shape, "min_bin_content": self.min_bin_content,
            "on_invalid": self.on_invalid}}

        cats = self.channel_categories()
        masks = [c.mask(nominal) for c in cats]
        if len(cats) > 1:
            overlap = np.sum(masks, axis=0)
            if np.any(overlap > 1):
                raise ValueError(f"pyhf templates: categories overlap "
                                 f"({int(np.sum(overlap > 1))} nominal holdout events are in "
                                 "more than one); make the cuts exclusive")
        scores = np.asarray(classifier.predict(nominal), dtype=np.float64)
        sig = nominal.process == PROCESSES.index(SIGNAL)
        lo, hi = self.score_range
        layout: dict[str, tuple[Category, np.ndarray]] = {}
        for cat, m in zip(cats, masks):
            name = f"{self.channel}_{cat.name}" if self.categories else self.channel
            key = cat.name if self.categories else self.channel
            if not np.any(m) or np.sum(nominal.weights[m]) <= 0:
                raise ValueError(f"pyhf templates: channel {name!r} ({cat.describe()}) is empty "
                                 "in the nominal holdout; drop or merge the category")
            nb, how = int(self._bins[key]), self._binning[key]
            if how == "uniform":
                edges = np.linspace(lo, hi, nb + 1)
            else:
                try:
                    edges = weighted_quantile_edges(scores[m & sig], nominal.weights[m & sig],
                                                    nb, lo, hi)
                except ValueError as exc:
                    raise ValueError(f"{exc} (channel {name!r})") from None
            layout[name] = (cat, edges)
            metadata["channels"][name] = {"selection": cat.describe(), "bins": len(edges) - 1}

        hists = {n: {"nominal": h} for n, h in
                 self.fill_channels(classifier, nominal, layout).items()}
        # shape variations
        shape_points = {}
        for name in self.shape_systematics:
            if name not in data.randomised:
                continue
            down, up = shape_variation_points(name, data)
            shape_points[name] = (down, getattr(nominal_nps, name), up)
            for tag, value in (("down", down), ("up", up)):
                sample = data.apply_systematics(holdout, nominal_nps.replace(**{name: value}), seed)
                for n, h in self.fill_channels(classifier, sample, layout).items():
                    hists[n][f"{name}_{tag}"] = h

        scale_factors: dict[str, tuple[float, float]] = {}
        for name in self.norm_systematics:
            if name not in data.randomised:
                continue
            prior = data.priors[name]
            if prior.kind != "normal" or prior.loc <= 0:
                raise ValueError(
                    f"pyhf templates: normsys {name!r} needs a normal prior with loc > 0, "
                    f"got {prior}"
                )
            scale_factors[name] = ((prior.loc + prior.scale) / prior.loc,
                                   (prior.loc - prior.scale) / prior.loc)

        channels = {}
        floored, pruned = metadata["floored"], metadata["pruned"]
        for cname, (cat, edges) in layout.items():
            h_nom = hists[cname]["nominal"]
            values, variances = h_nom.values(), h_nom.variances()
            raw = {var: h.values() for var, h in hists[cname].items()}
            total_stat = np.sqrt(np.maximum(variances.sum(axis=1), 0.0))
            sample_data = {p: self._guard_bins(values[:, i], f"channel {cname!r} sample {p!r} "
                                               "nominal", floored)
                           for i, p in enumerate(PROCESSES)}
            stat = {p: np.sqrt(np.maximum(variances[:, i], 0.0)) for i, p in enumerate(PROCESSES)}
            histosys: dict[str, dict] = {}
            normsys: dict[str, dict] = {}
            for np_name in shape_points:
                for i, p in enumerate(PROCESSES):
                    where = f"channel {cname!r} sample {p!r} {np_name}"
                    lo_d, hi_d, norm = self._process_shape(
                        values[:, i], raw[f"{np_name}_down"][:, i], raw[f"{np_name}_up"][:, i],
                        stat[p])
                    if norm is not None:
                        size = max(abs(norm[0] - 1.0), abs(norm[1] - 1.0))
                        if size < self.prune_normsys:
                            pruned.append({"where": where, "type": "normsys", "size": size})
                        else:
                            normsys.setdefault(np_name, {})[p] = self._guard_normsys(
                                norm[0], norm[1], where, floored)
                    delta = np.maximum(np.abs(hi_d - values[:, i]), np.abs(lo_d - values[:, i]))
                    ref = np.where(total_stat > 0, total_stat, np.inf)
                    size = float(np.max(delta / ref)) if len(delta) else 0.0
                    if size < self.prune_shape:
                        pruned.append({"where": where, "type": "histosys",
                                       "max_shift_over_staterror": size})
                        continue
                    histosys.setdefault(np_name, {})[p] = (
                        self._guard_bins(lo_d, f"{where} down", floored),
                        self._guard_bins(hi_d, f"{where} up", floored))
            for np_name, (hi_f, lo_f) in scale_factors.items():
                size = max(abs(hi_f - 1.0), abs(lo_f - 1.0))
                for p in NORM_NPS[np_name]:
                    where = f"channel {cname!r} sample {p!r} {np_name}"
                    if size < self.prune_normsys:
                        pruned.append({"where": where, "type": "normsys", "size": size})
                        continue
                    normsys.setdefault(np_name, {})[p] = self._guard_normsys(
                        hi_f, lo_f, where, floored)
            channels[cname] = ChannelTemplates(
                name=cname, category=cat, edges=edges, hists=hists[cname],
                sample_data=sample_data, histosys=histosys, normsys=normsys,
                staterror=stat if self.staterror else None, raw=raw)
        if floored:
            metadata["warnings"] = [f"{f['where']}: {len(f.get('bins', [1]))} value(s) floored"
                                    for f in floored]

        if self.mu_bounds is not None:
            mu_bounds = self.mu_bounds
        else:
            mu_lo, mu_hi = data.mu_range
            mu_bounds = (min(0.0, float(mu_lo)), max(10.0, 3.0 * float(mu_hi)))
        return BinnedTemplates(
            classifier=classifier, channels=channels, shape_points=shape_points,
            scale_factors=scale_factors, priors=data.priors, mu_bounds=mu_bounds,
            metadata=metadata,
        )


@hookimpl
def register_templates(register):
    register("pyhf", PyhfTemplates)


__all__ = ["BinnedTemplates", "Category", "ChannelTemplates", "Cut", "PyhfTemplates",
           "nominal_nuisances", "np_value", "parse_categories", "smooth_353h",
           "smooth_polynomial", "weighted_quantile_edges"]
