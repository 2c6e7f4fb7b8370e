"""Built-in diagnostics: the adversarial probe and the prior-dependence study."""
