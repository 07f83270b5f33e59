"""Matplotlib figures for the run's outputs without pyplot (figures, state pages).

Importing pyplot costs ~0.2 s of every ``imsim run``; a :class:`matplotlib.figure.Figure` on an
Agg canvas draws and saves the same pixels. matplotlib itself is imported only when a figure
is made.
"""
from __future__ import annotations


def new_figure(figsize):
    """A figure of ``figsize`` inches on an Agg canvas, made without pyplot.

    The same figure as ``pyplot.figure(figsize=...)`` (same rcParams defaults, same PNG bytes
    when saved) without registering it with pyplot's figure manager, so there is nothing to
    close: it goes when the last reference does.

    Parameters
    ----------
    figsize : tuple of float
        Width and height in inches.

    Returns
    -------
    matplotlib.figure.Figure
        The empty figure (add axes with ``fig.subplots(...)``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


__all__ = ["new_figure"]
