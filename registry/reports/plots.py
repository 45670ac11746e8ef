"""Kaplan-Meier plots with numbers at risk under the axis (matplotlib, PNG bytes)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from registry.core.units import DAYS_PER_MONTH
from registry.statistics.survival import KaplanMeier

PALETTE = ("#1b6ca8", "#d1495b", "#2e8b57", "#8d6a9f", "#e08e0b", "#5b5b5b")  # when none is given
TICKS = (0, 12, 24, 36, 48, 60, 72)


def km_plot(
    curves: dict[str, KaplanMeier],
    title: str,
    labels: dict[str, str],
    at_risk: dict[str, dict[str, int | None]] | None = None,
    colours: dict[str, str] | None = None,
) -> bytes:
    """Step curves (months on x), censoring ticks, and a numbers-at-risk table below.
    ``colours`` maps groups to colours (the definition's ``[analysis]``); others get the
    palette in order."""
    colour_of = {g: (colours or {}).get(g, PALETTE[i % len(PALETTE)]) for i, g in enumerate(curves)}
    fig = plt.figure(figsize=(8.5, 6.2), dpi=110)
    ax = fig.add_axes((0.1, 0.36, 0.85, 0.56))
    xmax = 72
    for g, km in curves.items():
        x = np.concatenate([[0.0], km.time / DAYS_PER_MONTH])
        y = np.concatenate([[1.0], km.surv])
        colour = colour_of[g]
        ax.step(x, y, where="post", color=colour, lw=1.8, label=f"{g}: {labels.get(g, '')}")
        cens = km.n_censor > 0
        ax.plot(km.time[cens] / DAYS_PER_MONTH, km.surv[cens], "|", color=colour, ms=7)
    ax.axhline(0.5, color="#999", lw=0.8, ls=":")
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(TICKS)
    ax.set_xlabel("Months")
    ax.set_ylabel("Probability")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.25)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    # numbers at risk (time >= t), one row per group, aligned with the x ticks
    fig.text(0.01, 0.25, "Number at risk", fontsize=9, weight="bold")
    for row, (g, km) in enumerate(curves.items()):
        ty = 0.21 - row * 0.045
        fig.text(0.02, ty, g, fontsize=9, color=colour_of[g])
        for t in TICKS:
            n = km.n_risk_at(t * DAYS_PER_MONTH)
            if at_risk and g in at_risk and str(t) in at_risk[g]:
                shown = at_risk[g][str(t)]
                label = "<" if shown is None else str(shown)
            else:
                label = str(n)
            xpos = 0.1 + 0.85 * t / xmax
            fig.text(xpos, ty, label, fontsize=9, ha="center")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
