"""A sibling module, imported by bare name (``from analysis import ...``)."""

from constants import HALF_WIDTH

NAME = "sibling"


def interval(n, s, b):
    mu_hat = (n - b) / s
    return mu_hat, HALF_WIDTH * (n ** 0.5) / s
