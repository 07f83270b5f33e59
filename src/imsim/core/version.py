"""The version of imsim, in the bottom layer so that every layer can record it in a manifest."""
from __future__ import annotations

__version__ = "0.1.0"
