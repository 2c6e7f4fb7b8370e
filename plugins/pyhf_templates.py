"""Built-in template strategy: binned classifier-score templates as a pyhf model.

One channel, the classifier score, four samples (``htautau`` scaled by the POI
``mu``; ``ztautau``, ``ttbar``, ``diboson``).  Templates are filled from the
holdout (weights = one pseudo-experiment's expected yield) with ``hist``
Weight storage, so the MC statistical uncertainty is known per bin.

Modifiers (only for NPs in ``data.randomised``; fixed NPs stay at their value):

* ``tes``, ``jes`` -- ``histosys`` from the holdout shifted to the prior's
  ``loc +- scale`` (1 +- 0.01); the fit parameter is ``alpha = (tes - 1)/0.01``.
* ``soft_met`` -- its prior is LogNormal(0, 1), so the fit parameter is
  ``alpha = ln(soft_met)`` with a unit Gaussian constraint: nominal template at
  soft_met = e^0 = 1 (the median, where PEs are centred), up at e^1, down at
  e^-1 (clipped into the NP's range).
* ``ttbar_scale`` (ttbar), ``diboson_scale`` (diboson), ``bkg_scale`` (all
  backgrounds) -- ``normsys`` with hi/lo = (loc +- scale)/loc, i.e. 1 +- 0.02,
  1 +- 0.25, 1 +- 0.001.
* ``staterror`` -- the holdout's per-bin sqrt(sum w^2).

All shifted holdouts use the same seed as the nominal one, so the smearing
noise is common and template differences are the systematic effect alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from workbench import hookimpl
from workbench.events import Events
from workbench.nuisance import NuisanceParameters
from workbench.protocols import Classifier, TrainingData
from workbench.schema import PROCESSES, SIGNAL

SHAPE_NPS = ("tes", "jes", "soft_met")
NORM_NPS = {
    "ttbar_scale": ("ttbar",),
    "diboson_scale": ("diboson",),
    "bkg_scale": ("ztautau", "ttbar", "diboson"),
}
"""Weight-scale NPs and the samples they multiply."""

BINNINGS = ("equal-signal", "uniform")
POI = "mu"


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


def shape_variation_points(name: str, data: TrainingData) -> tuple[float, float]:
    """(down, up) NP values for the +-1 sigma templates of a shape NP.

    Normal prior: ``loc -+ scale``; log-normal: ``exp(loc -+ scale)`` so the
    interpolation parameter is the log of the NP.  Clipped into the NP's range.
    """
    prior = data.priors[name]
    if prior.kind == "lognormal":
        down, up = np.exp(prior.loc - prior.scale), np.exp(prior.loc + prior.scale)
    elif prior.kind == "normal":
        down, up = prior.loc - prior.scale, prior.loc + prior.scale
    else:
        raise ValueError(f"pyhf templates: prior kind {prior.kind!r} of {name!r} is not supported")
    return float(np.clip(down, prior.low, prior.high)), float(np.clip(up, prior.low, prior.high))


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


class BinnedTemplates:
    """The built templates (follows ``workbench.protocols.Templates``).

    ``hists`` maps a variation name (``"nominal"``, ``"tes_up"``, ...) to a
    ``hist.Hist`` (score x process, Weight storage); ``modifiers`` describes
    what each fit parameter means (``to_physical`` converts a fitted value).
    """

    poi = POI

    def __init__(self, *, classifier: Classifier, edges: np.ndarray, channel: str,
                 hists: dict, sample_data: dict[str, np.ndarray],
                 histosys: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
                 normsys: dict[str, dict[str, tuple[float, float]]],
                 staterror: dict[str, np.ndarray] | None,
                 shape_points: dict[str, tuple[float, float, float]],
                 priors: Mapping, mu_bounds: tuple[float, float]) -> None:
        self.classifier = classifier
        self.edges = np.asarray(edges, dtype=np.float64)
        self.channel = channel
        self.hists = hists
        self.sample_data = sample_data
        self.histosys = histosys
        self.normsys = normsys
        self.staterror = staterror
        self.shape_points = shape_points
        self.priors = dict(priors)
        self.mu_bounds = mu_bounds

    @property
    def nbins(self) -> int:
        return len(self.edges) - 1

    def fill(self, scores: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Weighted counts of ``scores`` in the template binning (scores clipped into range)."""
        import hist

        lo, hi = self.edges[0], self.edges[-1]
        clipped = np.clip(np.asarray(scores, dtype=np.float64), lo, np.nextafter(hi, lo))
        h = hist.Hist(hist.axis.Variable(self.edges, flow=False), storage=hist.storage.Double())
        h.fill(clipped, weight=weights)
        return h.values()

    def observations(self, events: Events) -> dict[str, list[float]]:
        """Bin counts of a pseudo-experiment (its weights summed: counts for unit weights)."""
        scores = self.classifier.predict(events)
        weights = events.weights if "weights" in events else None
        return {self.channel: self.fill(scores, weights).tolist()}

    def asimov(self) -> list[float]:
        """Expected counts at mu = 1, nominal NPs."""
        return np.sum(list(self.sample_data.values()), axis=0).tolist()

    def to_physical(self, parameter: str, value: float) -> float:
        """A fitted modifier value as the NP it stands for (e.g. alpha -> tes)."""
        if parameter in self.shape_points:
            down, nominal, up = self.shape_points[parameter]
            prior = self.priors[parameter]
            if prior.kind == "lognormal":  # alpha = ln(NP) (interpolation in the log)
                return float(np.exp(np.log(nominal) + value * prior.scale))
            return float(nominal + value * ((up - nominal) if value >= 0 else (nominal - down)))
        if parameter in self.normsys:
            hi, lo = next(iter(self.normsys[parameter].values()))
            return float(hi ** value if value >= 0 else lo ** (-value))
        return float(value)

    def workspace(self, observations: Mapping[str, Sequence[float]] | None = None) -> dict:
        """The pyhf workspace (schema 1.0.0); ``None`` -> Asimov data (mu = 1, nominal NPs)."""
        if observations is None:
            data = self.asimov()
        else:
            if self.channel not in observations:
                raise KeyError(
                    f"pyhf templates: observations lack channel {self.channel!r} "
                    f"(got {sorted(observations)})"
                )
            data = [float(x) for x in observations[self.channel]]
            if len(data) != self.nbins:
                raise ValueError(
                    f"pyhf templates: channel {self.channel!r} has {self.nbins} bins, "
                    f"observations have {len(data)}"
                )
        samples = []
        for name, nominal in self.sample_data.items():
            modifiers: list[dict] = []
            if name == SIGNAL:
                modifiers.append({"name": POI, "type": "normfactor", "data": None})
            for np_name, by_sample in self.histosys.items():
                if name in by_sample:
                    lo, hi = by_sample[name]
                    modifiers.append({"name": np_name, "type": "histosys",
                                      "data": {"hi_data": hi.tolist(), "lo_data": lo.tolist()}})
            for np_name, by_sample in self.normsys.items():
                if name in by_sample:
                    hi, lo = by_sample[name]
                    modifiers.append({"name": np_name, "type": "normsys",
                                      "data": {"hi": hi, "lo": lo}})
            if self.staterror is not None:
                modifiers.append({"name": f"staterror_{self.channel}", "type": "staterror",
                                  "data": self.staterror[name].tolist()})
            samples.append({"name": name, "data": nominal.tolist(), "modifiers": modifiers})
        parameters = [{"name": POI, "bounds": [list(self.mu_bounds)], "inits": [1.0]}]
        if "soft_met" in self.shape_points:
            # alpha = ln(soft_met)/scale may not exceed the NP's clip range.
            prior = self.priors["soft_met"]
            top = (np.log(prior.high) - prior.loc) / prior.scale
            parameters.append({"name": "soft_met", "bounds": [[-5.0, float(min(5.0, top))]]})
        return {
            "channels": [{"name": self.channel, "samples": samples}],
            "observations": [{"name": self.channel, "data": data}],
            "measurements": [{"name": "measurement",
                              "config": {"poi": POI, "parameters": parameters}}],
            "version": "1.0.0",
        }


class PyhfTemplates:
    """Classifier-score histograms with tes/jes/soft_met histosys, scale normsys and staterror."""

    def __init__(
        self,
        bins: int = 20,
        binning: str = "equal-signal",
        score_range: Sequence[float] = (0.0, 1.0),
        shape_systematics: Sequence[str] = SHAPE_NPS,
        norm_systematics: Sequence[str] = tuple(NORM_NPS),
        staterror: bool = True,
        channel: str = "score",
        min_bin_content: float = 1e-6,
        mu_bounds: Sequence[float] | None = None,
    ) -> None:
        if binning not in BINNINGS:
            raise ValueError(f"pyhf templates: binning={binning!r}; valid: {', '.join(BINNINGS)}")
        if int(bins) < 1:
            raise ValueError(f"pyhf templates: bins={bins} must be >= 1")
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
        self.bins = int(bins)
        self.binning = binning
        self.score_range = (lo, hi)
        self.shape_systematics = tuple(shape_systematics)
        self.norm_systematics = tuple(norm_systematics)
        self.staterror = bool(staterror)
        self.channel = str(channel)
        self.min_bin_content = float(min_bin_content)
        self.mu_bounds = tuple(float(x) for x in mu_bounds) if mu_bounds is not None else None

    def _histogram(self, classifier: Classifier, events: Events, edges: np.ndarray):
        """Score x process histogram (Weight storage) of a labelled sample."""
        import hist

        lo, hi = edges[0], edges[-1]
        scores = np.clip(np.asarray(classifier.predict(events), dtype=np.float64),
                         lo, np.nextafter(hi, lo))
        h = hist.Hist(
            hist.axis.Variable(edges, name="score", flow=False),
            hist.axis.IntCategory(list(range(len(PROCESSES))), name="process"),
            storage=hist.storage.Weight(),
        )
        h.fill(score=scores, process=events.process, weight=events.weights)
        return h

    def build(self, data: TrainingData, classifier: Classifier) -> BinnedTemplates:
        if classifier is None:
            raise ValueError("pyhf templates need a classifier (add [classifier] to the spec)")
        holdout = data.holdout
        if not holdout.is_labelled:
            raise ValueError("pyhf templates: data.holdout has no 'process' column")
        seed = int(data.seed) % (2**31 - 1)
        nominal_nps = nominal_nuisances(data)
        nominal = data.apply_systematics(holdout, nominal_nps, seed)

        lo, hi = self.score_range
        if self.binning == "uniform":
            edges = np.linspace(lo, hi, self.bins + 1)
        else:
            sig = nominal.process == PROCESSES.index(SIGNAL)
            edges = weighted_quantile_edges(
                np.asarray(classifier.predict(nominal[sig]), dtype=np.float64),
                nominal.weights[sig], self.bins, lo, hi)

        hists = {"nominal": self._histogram(classifier, nominal, edges)}
        floor = self.min_bin_content

        def per_sample(h) -> dict[str, np.ndarray]:
            values = h.values()
            return {p: np.maximum(values[:, i], floor) for i, p in enumerate(PROCESSES)}

        sample_data = per_sample(hists["nominal"])
        variances = hists["nominal"].variances()

        histosys: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        shape_points = {}
        for name in self.shape_systematics:
            if name not in data.randomised:
                continue
            down, up = shape_variation_points(name, data)
            shape_points[name] = (down, getattr(nominal_nps, name), up)
            shifted = {}
            for tag, value in (("down", down), ("up", up)):
                sample = data.apply_systematics(holdout, nominal_nps.replace(**{name: value}), seed)
                hists[f"{name}_{tag}"] = self._histogram(classifier, sample, edges)
                shifted[tag] = per_sample(hists[f"{name}_{tag}"])
            histosys[name] = {p: (shifted["down"][p], shifted["up"][p]) for p in PROCESSES}

        normsys: dict[str, dict[str, tuple[float, float]]] = {}
        for name in self.norm_systematics:
            if name not in data.randomised:
                continue
            prior = data.priors[name]
            if prior.kind != "normal" or prior.loc <= 0:
                raise ValueError(
                    f"pyhf templates: normsys {name!r} needs a normal prior with loc > 0, "
                    f"got {prior}"
                )
            hi_f = (prior.loc + prior.scale) / prior.loc
            lo_f = max((prior.loc - prior.scale) / prior.loc, 1e-3)  # normsys lo must be > 0
            normsys[name] = {p: (hi_f, lo_f) for p in NORM_NPS[name]}

        staterror = None
        if self.staterror:
            staterror = {p: np.sqrt(np.maximum(variances[:, i], 0.0))
                         for i, p in enumerate(PROCESSES)}

        if self.mu_bounds is not None:
            mu_bounds = self.mu_bounds
        else:
            mu_lo, mu_hi = data.mu_range
            mu_bounds = (min(0.0, float(mu_lo)), max(10.0, 3.0 * float(mu_hi)))
        return BinnedTemplates(
            classifier=classifier, edges=edges, channel=self.channel, hists=hists,
            sample_data=sample_data, histosys=histosys, normsys=normsys,
            staterror=staterror, shape_points=shape_points, priors=data.priors,
            mu_bounds=mu_bounds,
        )


@hookimpl
def register_templates(register):
    register("pyhf", PyhfTemplates)


__all__ = ["BinnedTemplates", "PyhfTemplates", "nominal_nuisances"]
