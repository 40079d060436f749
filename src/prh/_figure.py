"""New matplotlib figures without pyplot: no backend is chosen and no global figure list is kept, so prh never
changes the matplotlib state of the program that imports it. Figures are written with ``fig.savefig`` (Agg)."""

from __future__ import annotations

from typing import Any

#: keyword arguments of ``plt.subplots`` that go to ``Figure.subplots``; the rest go to ``Figure(...)``
_SUBPLOTS_KW = ("sharex", "sharey", "squeeze", "width_ratios", "height_ratios", "subplot_kw", "gridspec_kw")


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any):
    """``matplotlib.pyplot.subplots`` without pyplot: returns ``(figure, axes)`` alike, drawn with the same rcParams.

    Parameters
    ----------
    nrows, ncols : grid of axes.
    kwargs : ``sharex``, ``sharey``, ``squeeze``, ... as for ``Figure.subplots``; the others (``figsize``, ``dpi``,
        ...) as for ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    grid = {key: kwargs.pop(key) for key in _SUBPLOTS_KW if key in kwargs}
    fig = Figure(**kwargs)
    return fig, fig.subplots(nrows, ncols, **grid)


__all__ = ["subplots"]
