"""Example actors used by the pipelines in ``examples/``."""
