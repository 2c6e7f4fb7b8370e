"""Counting again, with the arithmetic in sibling modules (analysis.py, lib/constants.py)."""

import analysis
import numpy as np


class Model:
    def __init__(self, get_train_set=None, systematics=None):
        self.get_train_set = get_train_set
        self.systematics = systematics

    def fit(self):
        train = self.systematics(self.get_train_set())
        w, y = train["weights"].to_numpy(), train["labels"].to_numpy()
        self.s, self.b = float(w[y == 1].sum()), float(w[y == 0].sum())

    def predict(self, test_set):
        import constants  # imported lazily, at predict time, by bare name

        mu_hat, half = analysis.interval(float(np.sum(test_set["weights"])), self.s, self.b)
        return {"mu_hat": mu_hat, "delta_mu_hat": 2 * half, "p16": mu_hat - half,
                "p84": mu_hat + half, "module": analysis.NAME,
                "half_width": constants.HALF_WIDTH}
