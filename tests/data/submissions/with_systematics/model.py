"""Uses ``systematics`` during fit: the background at the nominal point and at tes =
1.02 (DataFrame form), the dict form on a training subset, then counts."""

import numpy as np


class Model:
    def __init__(self, get_train_set=None, systematics=None):
        self.get_train_set = get_train_set
        self.systematics = systematics

    def fit(self):
        train = self.get_train_set()
        nominal = self.systematics(train, tes=1.0, jes=1.0, soft_met=0.0)
        shifted = self.systematics(train, tes=1.02, soft_met=1.0, seed=5)
        y, w = nominal["labels"].to_numpy(), nominal["weights"].to_numpy()
        self.s, self.b = float(w[y == 1].sum()), float(w[y == 0].sum())
        ys, ws = shifted["labels"].to_numpy(), shifted["weights"].to_numpy()
        self.b_tes_up = float(ws[ys == 0].sum())
        # the dict form, on a quarter of the training set
        part = self.get_train_set(train_size=0.25)
        as_dict = {"data": part.drop(columns=["weights"]), "weights": part["weights"]}
        out = self.systematics(as_dict, ttbar_scale=1.1)
        self.dict_rows = len(out["data"])
        self.dict_weight = float(out["weights"].sum())

    def predict(self, test_set):
        n = float(np.sum(test_set["weights"]))
        mu_hat = (n - self.b) / self.s
        half = np.sqrt(n) / self.s
        return {"mu_hat": mu_hat, "delta_mu_hat": 2 * half, "p16": mu_hat - half,
                "p84": mu_hat + half, "b_tes_up": self.b_tes_up, "b": self.b}
