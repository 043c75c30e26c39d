"""The training-curve PNG: the Eq. 9 loss per step and held-out LDS per measurement, against steps,
with wall time on a second axis (step 0 = the base encoder)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from airsearch.atomic import atomic_path  # noqa: E402


def plot_training_curve(losses: Sequence[float], lds_history: Sequence[dict], path: str | Path) -> Path:
    fig, (ax_loss, ax_lds) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(range(1, len(losses) + 1), losses, lw=1)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("pairwise rank loss (Eq. 9)")
    ax_loss.set_title("training loss")
    steps = [h["step"] for h in lds_history]
    ax_lds.plot(steps, [h["lds"] for h in lds_history], marker="o", ms=3)
    best = max(range(len(steps)), key=lambda i: lds_history[i]["lds"], default=None) if steps else None
    if best is not None:
        ax_lds.axvline(steps[best], color="grey", lw=0.8, ls="--", label=f"best: step {steps[best]}")
        ax_lds.legend(loc="lower right", fontsize=8)
    ax_lds.set_xlabel("step (0 = base encoder)")
    ax_lds.set_ylabel("held-out LDS")
    ax_lds.set_title("held-out LDS")
    seconds = [h.get("seconds", float("nan")) for h in lds_history]
    if len(steps) >= 2 and all(np.isfinite(seconds)) and steps[-1] > steps[0]:
        minutes = np.asarray(seconds) / 60.0
        top = ax_lds.secondary_xaxis(
            "top",
            functions=(
                lambda s: np.interp(s, steps, minutes),
                lambda m: np.interp(m, minutes, steps),
            ),
        )
        top.set_xlabel("wall time (min)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
