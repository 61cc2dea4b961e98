"""datapipe: find what is wrong with an image dataset, score it, curate it, train on it."""

__version__ = "0.1.0"
