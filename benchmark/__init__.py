"""dipbench: Deep Image Prior methods against data-driven methods on image inverse problems."""

__version__ = "0.1.0"
