"""Out-of-fold scoring: every sample judged by a model that never trained on it."""
