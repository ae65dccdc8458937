"""moohead: multi-objective search for classification heads on transformer encoders."""

__version__ = "0.1.0"
