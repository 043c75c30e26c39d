"""AirRep encoder training (methods.md §1, Eq. 9): loss, two-pass gradient, trainer, held-out LDS."""

from typing import TYPE_CHECKING

from airsearch.lazy import lazy_exports

if TYPE_CHECKING:
    from airsearch.trainers.encoder_training.config import TrainConfig, TrainResult
    from airsearch.trainers.encoder_training.evaluate import heldout_lds, predict_split_scores
    from airsearch.trainers.encoder_training.loss import pairwise_rank_loss
    from airsearch.trainers.encoder_training.trainer import train_encoder
    from airsearch.trainers.encoder_training.two_pass import single_pass_backward, two_pass_backward

_EXPORTS = {
    "TrainConfig": "config",
    "TrainResult": "config",
    "heldout_lds": "evaluate",
    "predict_split_scores": "evaluate",
    "pairwise_rank_loss": "loss",
    "train_encoder": "trainer",
    "single_pass_backward": "two_pass",
    "two_pass_backward": "two_pass",
}
__all__ = [
    "TrainConfig",
    "TrainResult",
    "heldout_lds",
    "pairwise_rank_loss",
    "predict_split_scores",
    "single_pass_backward",
    "train_encoder",
    "two_pass_backward",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
