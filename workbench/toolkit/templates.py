"""HistFactory templates of the classifier score: the built model and its builder.

Shared by the template strategies "pyhf" (the model as a pyhf workspace) and
"polynomial" (the same channels with per-bin polynomial NP responses and its own
likelihood): :class:`HistFactoryTemplates` fills the holdout into score
histograms per channel and makes the systematic variations,
:class:`BinnedTemplates` is what it builds.

Channels: the classifier score, optionally split into categories (jet
multiplicity, transverse-mass regions or user cuts, see
:mod:`workbench.toolkit.binning`), each its own pyhf channel with its own
binning.  Four samples per channel (``htautau`` scaled by the POI ``mu``;
``ztautau``, ``ttbar``, ``diboson``), filled from the holdout (weights = one
pseudo-experiment's expected yield) with ``hist`` Weight storage, so the MC
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

Variations may be symmetrised, smoothed and pruned (see :class:`HistFactoryParams`);
every floor, prune and guard decision is recorded in ``templates.metadata``
(pyhf's schema allows no extra keys in the workspace, so ``export_workspace``
writes it to a sidecar file).

All shifted holdouts use the same seed as the nominal one, so the smearing
noise is common and template differences are the systematic effect alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from workbench.data.events import Events
from workbench.data.schema import PROCESSES, SIGNAL
from workbench.plugin.protocols import Classifier, TrainingData
from workbench.systematics.nuisance import SHAPE_NPS
from workbench.toolkit.binning import (
    Category,
    parse_categories,
    smooth_353h,
    smooth_polynomial,
    weighted_quantile_edges,
)
from workbench.toolkit.nominal import nominal_nuisances, shape_variation_points

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

Binning = Literal["equal-signal", "uniform"]


def per_channel(value, names: list[str], what: str, default):
    """A scalar for every channel, or a ``{category: value}`` table (others: default)."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"{what} names unknown categories {unknown}; "
                             f"categories: {names}")
        return {n: value.get(n, default) for n in names}
    return {n: value for n in names}


# -- the parameters -----------------------------------------------------------
@dataclass
class HistFactoryParams:
    """Parameters of a HistFactory template builder (the "pyhf" strategy's, and the
    base of "polynomial"'s).

    Processing of each shape variation, in this order: ``norm_shape_split`` ->
    ``symmetrise`` -> ``smoothing`` -> pruning -> floors.  Defaults reproduce the
    single-channel model without any of these steps.
    """

    bins: int | dict[str, int] = 20
    """Bins per channel, or ``{category: bins}`` (others: 20)."""
    binning: Binning | dict[str, Binning] = "equal-signal"
    """``equal-signal`` (equal expected signal per bin) or ``uniform``; per category too."""
    score_range: tuple[float, float] = (0.0, 1.0)
    """Range of the classifier score that is binned (scores outside are clipped in)."""
    shape_systematics: tuple[str, ...] = SHAPE_NPS
    """Shape NPs with histosys (those not randomised get none)."""
    norm_systematics: tuple[str, ...] = tuple(NORM_NPS)
    """Weight-scale NPs with normsys."""
    staterror: bool = True
    """Per-bin MC statistical uncertainty (one staterror per channel)."""
    channel: str = "score"
    """Channel name (the prefix ``<channel>_<category>`` with categories)."""
    min_bin_content: float = 1e-6
    """Floor of non-positive template bins (recorded in ``metadata``)."""
    mu_bounds: tuple[float, float] | None = None
    """Bounds of mu in the workspace (default: [min(0, mu_low), max(10, 3 mu_high)])."""
    categories: str | list[dict[str, Any]] | None = None
    """A preset (``njets``, ``mt``, ``njets-mt``) or a list of cut tables."""
    mt_threshold: float = 40.0
    """Transverse-mass threshold of the ``mt`` presets (GeV)."""
    norm_shape_split: bool = False
    """Split each shape variation into a normsys and a shape-only histosys."""
    symmetrise: Literal["none", "mirror", "average"] = "none"
    """Symmetrisation of the up/down variations."""
    smoothing: Literal["none", "median", "polynomial"] = "none"
    """Smoothing of the variation / nominal ratio (353QH twice, or a polynomial)."""
    smoothing_degree: int = 2
    """Degree of the ``polynomial`` smoothing."""
    prune_normsys: float = 0.0
    """Drop normsys smaller than this (relative size)."""
    prune_shape: float = 0.0
    """Drop histosys whose largest shift is below this many staterrors."""
    on_invalid: Literal["floor", "raise"] = "floor"
    """Negative bins / normsys factors: floor them (recorded) or raise."""

    def __post_init__(self) -> None:
        categories = parse_categories(self.categories, float(self.mt_threshold))
        names = [c.name for c in categories] if categories else [str(self.channel)]
        bins = per_channel(self.bins, names, "bins", 20)
        binning = per_channel(self.binning, names, "binning", "equal-signal")
        for n in names:
            if binning[n] not in BINNINGS:
                raise ValueError(f"binning={binning[n]!r} (channel {n}); "
                                 f"valid: {', '.join(BINNINGS)}")
            if int(bins[n]) < 1:
                raise ValueError(f"bins={bins[n]} (channel {n}) must be >= 1")
        lo, hi = (float(x) for x in self.score_range)
        if not lo < hi:
            raise ValueError(f"score_range={list(self.score_range)} must be increasing")
        bad = [n for n in self.shape_systematics if n not in SHAPE_NPS]
        if bad:
            raise ValueError(f"shape_systematics {bad} unknown; valid: {SHAPE_NPS}")
        bad = [n for n in self.norm_systematics if n not in NORM_NPS]
        if bad:
            raise ValueError(f"norm_systematics {bad} unknown; valid: {tuple(NORM_NPS)}")
        if not self.min_bin_content > 0:
            raise ValueError(f"min_bin_content={self.min_bin_content} must be > 0")
        if self.mu_bounds is not None and not (len(self.mu_bounds) == 2
                                               and self.mu_bounds[0] < self.mu_bounds[1]):
            raise ValueError(f"mu_bounds={self.mu_bounds} must be [low, high]")
        for value, valid, what in ((self.symmetrise, SYMMETRISATIONS, "symmetrise"),
                                   (self.smoothing, SMOOTHINGS, "smoothing"),
                                   (self.on_invalid, ON_INVALID, "on_invalid")):
            if value not in valid:
                raise ValueError(f"{what}={value!r}; valid: {', '.join(valid)}")
        if self.prune_normsys < 0 or self.prune_shape < 0:
            raise ValueError("prune_normsys and prune_shape must be >= 0")


# -- filling ------------------------------------------------------------------
def score_histogram(scores: np.ndarray, process: np.ndarray, weights: np.ndarray,
                    edges: np.ndarray):
    """Score x process histogram (Weight storage); scores are clipped into the edges."""
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


def fill_channels(classifier: Classifier, events: Events,
                  channels: Mapping[str, tuple[Category, np.ndarray]]) -> dict:
    """``{channel: score x process hist}`` of a labelled sample, for the layout
    ``{channel: (category, edges)}``; the classifier scores it once."""
    scores = np.asarray(classifier.predict(events), dtype=np.float64)
    process, weights = events.process, events.weights
    out = {}
    for name, (category, edges) in channels.items():
        m = category.mask(events)
        out[name] = score_histogram(scores[m], process[m], weights[m], edges)
    return out


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

    def bin_edges(self) -> dict[str, list[float]]:
        """Channel name -> its score bin edges (``EdgedTemplates``)."""
        return {name: [float(x) for x in ch.edges] for name, ch in self.channels.items()}

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
        channels: list[dict[str, Any]] = []
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
                for np_name, factors in ch.normsys.items():
                    if name in factors:
                        f_hi, f_lo = factors[name]
                        modifiers.append({"name": np_name, "type": "normsys",
                                          "data": {"hi": float(f_hi), "lo": float(f_lo)}})
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


# -- the builder --------------------------------------------------------------
class HistFactoryTemplates:
    """Classifier-score histograms per category with tes/jes/soft_met histosys
    (optionally split into normsys + shape histosys), scale normsys and staterror.

    The builder of a template strategy: constructed from a resolved
    :class:`HistFactoryParams` (the strategy resolves spec or keyword parameters
    first); ``build(data, classifier)`` returns :class:`BinnedTemplates`.
    """

    def __init__(self, params: HistFactoryParams | None = None) -> None:
        p = params if params is not None else HistFactoryParams()
        self.params = p
        self.categories = parse_categories(p.categories, float(p.mt_threshold))
        self.category_names = ([c.name for c in self.categories] if self.categories
                               else [str(p.channel)])
        names = self.category_names
        self.bins = p.bins if not isinstance(p.bins, Mapping) else dict(p.bins)
        self._bins = per_channel(p.bins, names, "bins", 20)
        self._binning = per_channel(p.binning, names, "binning", "equal-signal")
        self.binning = p.binning
        self.score_range = (float(p.score_range[0]), float(p.score_range[1]))
        self.shape_systematics = tuple(p.shape_systematics)
        self.norm_systematics = tuple(p.norm_systematics)
        self.staterror = bool(p.staterror)
        self.channel = str(p.channel)
        self.min_bin_content = float(p.min_bin_content)
        self.mu_bounds = ((float(p.mu_bounds[0]), float(p.mu_bounds[1]))
                          if p.mu_bounds is not None else None)
        self.norm_shape_split = bool(p.norm_shape_split)
        self.symmetrise = p.symmetrise
        self.smoothing = p.smoothing
        self.smoothing_degree = int(p.smoothing_degree)
        self.prune_normsys = float(p.prune_normsys)
        self.prune_shape = float(p.prune_shape)
        self.on_invalid = p.on_invalid

    # -- filling --------------------------------------------------------------
    def channel_categories(self) -> list[Category]:
        return self.categories or [Category(self.channel)]

    def fill_channels(self, classifier: Classifier, events: Events,
                      channels: Mapping[str, tuple[Category, np.ndarray]]) -> dict:
        """``{channel: hist}`` of a labelled sample (see :func:`fill_channels`)."""
        return fill_channels(classifier, events, channels)

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


__all__ = ["BINNINGS", "NORMSYS_FLOOR", "NORM_NPS", "ON_INVALID", "POI", "SMOOTHINGS",
           "SYMMETRISATIONS", "BinnedTemplates", "ChannelTemplates", "HistFactoryParams",
           "HistFactoryTemplates", "fill_channels", "per_channel", "score_histogram"]
