"""The per-layer separation figure of an extracted trait (`persona-tui vectors`).

Two panels over the layers: the held-out AUC (0.5 = the direction tells nothing) and the
standardized gap between positive and negative answers' projections, the layer the
extraction recommends marked. Grey lines and markers, so it reads in grayscale.
"""

from __future__ import annotations

from pathlib import Path

from persona_tui._util.deps import require
from persona_tui.analysis.plots import check_plot_path, write_figure
from persona_tui.vectors.record import VectorRecord


def separation_plot(record: VectorRecord, path: Path, dpi: int = 150) -> Path:
    """Draw `record`'s separation per layer to PNG, SVG or PDF; the path written."""
    check_plot_path(path)
    require("matplotlib", "analysis")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = record.per_layer
    layers = [s.layer for s in stats]
    chosen = record.recommended_layer
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 4.8), sharex=True)
    try:
        top.plot(layers, [s.separation for s in stats], color="0.2", marker="o")
        top.axhline(0.5, color="0.6", linestyle=":", linewidth=1)
        top.set_ylabel("held-out AUC")
        top.set_ylim(0.0, 1.05)
        bottom.plot(layers, [s.gap for s in stats], color="0.2", marker="s")
        bottom.axhline(0.0, color="0.6", linestyle=":", linewidth=1)
        bottom.set_ylabel("standardized gap")
        bottom.set_xlabel("layer")
        for axis in (top, bottom):
            axis.axvline(chosen, color="0.4", linestyle="--", linewidth=1)
        top.set_title(
            f"{record.trait}: separation of held-out answers (layer {chosen} recommended)"
        )
        return write_figure(figure, path, dpi)
    finally:
        plt.close(figure)
