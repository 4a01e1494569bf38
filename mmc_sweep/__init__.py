"""mmc-sweep: mechanistic mode connectivity experiments and the hyper-parameter studies around them."""

__version__ = "0.1.0"
