"""LinkOps: a self-hosted control plane for a small operations team."""

__version__ = "0.1.0"
