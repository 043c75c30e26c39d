"""The training-curve PNG: Eq. 9 loss per step and held-out LDS per epoch (epoch 0 = base encoder)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from airsearch.atomic import atomic_path  # noqa: E402


def plot_training_curve(losses: Sequence[float], lds_history: Sequence[dict], path: str | Path) -> Path:
    fig, (ax_loss, ax_lds) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(range(1, len(losses) + 1), losses, lw=1)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("pairwise rank loss (Eq. 9)")
    ax_loss.set_title("training loss")
    epochs = [h["epoch"] for h in lds_history]
    ax_lds.plot(epochs, [h["lds"] for h in lds_history], marker="o")
    ax_lds.set_xlabel("epoch (0 = base encoder)")
    ax_lds.set_ylabel("held-out LDS")
    ax_lds.set_title("held-out LDS")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
