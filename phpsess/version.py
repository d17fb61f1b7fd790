"""phpsess's version. No I/O."""

__all__ = ["__version__"]

__version__ = "0.1.0"
