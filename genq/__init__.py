"""Shared pieces both sides of genq need: settings, constants, the store, the chunk stream."""

__all__ = ["__version__"]
__version__ = "0.1.0"
