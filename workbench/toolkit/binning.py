"""Binning of binned models: event categories, equal-content edges and bin smoothing.

What a template builder needs before it fills anything -- which events go into
which channel (:class:`Cut`, :class:`Category`, :func:`parse_categories` with
the ``njets`` / ``mt`` / ``njets-mt`` presets), where the bin edges are
(:func:`weighted_quantile_edges`) -- and the bin-to-bin smoothing of systematic
variations (:func:`smooth_353h`, :func:`smooth_polynomial`).  Plain functions
of arrays and events, shared by the template strategies.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from workbench.data.events import Events

MT_COLUMN = "DER_mass_transverse_met_lep"
NJETS_COLUMN = "PRI_n_jets"
PRESETS = ("njets", "mt", "njets-mt")


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


def category_preset(name: str, mt_threshold: float) -> list[Category]:
    """The categories of a preset: ``njets`` (0, 1, >= 2 jets), ``mt`` (transverse mass
    below / above ``mt_threshold``) or their product ``njets-mt``."""
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
    raise ValueError(f"categories={name!r}; presets: {', '.join(PRESETS)} "
                     "(or a list of {name, column, low, high} / {name, cuts} tables)")


def parse_categories(categories, mt_threshold: float = 40.0) -> list[Category] | None:
    """``None`` (one inclusive channel), a preset name or a list of cut tables.

    A table is ``{name, column, low, high}`` or ``{name, cuts = [{column, low, high}, ...]}``.
    """
    if categories is None:
        return None
    if isinstance(categories, str):
        return category_preset(categories, mt_threshold)
    out = []
    for i, table in enumerate(categories):
        if not isinstance(table, Mapping) or "name" not in table:
            raise ValueError(f"categories[{i}] must be a table with 'name', got {table!r}")
        extra = set(table) - {"name", "column", "low", "high", "cuts"}
        if extra:
            raise ValueError(f"categories[{i}] has unknown key(s) {sorted(extra)}; "
                             "valid: name, column, low, high, cuts")
        raw = list(table.get("cuts", []))
        if "column" in table:
            raw.append({k: table[k] for k in ("column", "low", "high") if k in table})
        cuts = []
        for c in raw:
            if "column" not in c:
                raise ValueError(f"categories: a cut of category {table['name']!r} lacks "
                                 "'column'")
            low, high = c.get("low"), c.get("high")
            if low is not None and high is not None and not low < high:
                raise ValueError(f"categories: category {table['name']!r}: cut on "
                                 f"{c['column']} has low={low} >= high={high}")
            cuts.append(Cut(str(c["column"]), None if low is None else float(low),
                            None if high is None else float(high)))
        out.append(Category(str(table["name"]), tuple(cuts)))
    names = [c.name for c in out]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"categories: names must be unique and non-empty, got {names}")
    return out


# -- bin edges ----------------------------------------------------------------
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


# -- smoothing ----------------------------------------------------------------
def median_filter(x: np.ndarray, width: int) -> np.ndarray:
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
        y = median_filter(median_filter(median_filter(y, 3), 5), 3)
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


__all__ = ["MT_COLUMN", "NJETS_COLUMN", "PRESETS", "Category", "Cut", "category_preset",
           "median_filter", "parse_categories", "smooth_353h", "smooth_polynomial",
           "weighted_quantile_edges"]
