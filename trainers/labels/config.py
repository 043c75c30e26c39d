"""The ``airsearch labels generate`` config (one :class:`CommandConfig`, saved in the store manifest)."""

from __future__ import annotations

import dataclasses
from dataclasses import field

from airsearch.config import CorpusReadOptions, require
from airsearch.methods.registry import PreconditionOptions

# Fields that change how a run executes (or what is recorded beside the labels) but not the labels: a
# rerun into the same store may change them freely. Corpus and model *paths* are also free; their
# content fingerprints are checked (the factors folder's manifest too).
EXECUTION_FIELDS = frozenset(
    {"corpus", "lm", "out", "workers", "ray", "eval_batch_size", "movement", "factors", "subsets_per_job"}
)


def gradient_teachers() -> tuple[str, ...]:
    """The teachers that take gradients (the ones --teacher-params and --precondition apply to): the
    registry's gradient methods (imports the methods' modules, so it is asked only when needed)."""
    from airsearch.methods.plugin import gradient_method_names

    return gradient_method_names()


def checkpoint_teachers() -> tuple[str, ...]:
    """The teachers that run over checkpoints (--teacher-checkpoints): plug-ins declaring ``checkpoints``."""
    from airsearch.methods.plugin import plugins

    return tuple(p.name for p in plugins() if p.checkpoints)


@dataclasses.dataclass(kw_only=True)
class LabelConfig(PreconditionOptions, CorpusReadOptions):
    """Subset-retraining labels (AirRep §3.2, Eq. 8; methods.md §1), or a gradient teacher's scores.

    A gradient teacher may be K-FAC / EK-FAC preconditioned (:class:`PreconditionOptions`): the
    factors are fitted on the splits' train pools (or ``factors_sample``) and kept in ``factors``,
    by default the store's ``factors/`` folder, so a resumed run reuses them.
    """

    corpus: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Corpus file(s) (JSONL/Parquet/...); the positional CORPUS arguments.",
            "cli": False,
        },
    )
    lm: str = field(metadata={"help": "Target LM folder (HF format)."})
    out: str = field(metadata={"help": "Label store directory (created or resumed)."})
    splits: int = field(default=10, metadata={"help": "Number of cross-validation splits."})
    dev_size: int = field(default=200, metadata={"help": "Dev examples per split."})
    pool_size: int = field(
        default=1000, metadata={"help": "Train-pool examples per split (disjoint from its dev set)."}
    )
    subset_size: int = field(default=100, metadata={"help": "Examples per training subset (m)."})
    subsets_per_split: int = field(
        default=32, metadata={"help": "Subsets per split (K); each is one fine-tune job."}
    )
    epochs: int = field(default=2, metadata={"help": "Fine-tuning epochs per subset."})
    lr: float = field(default=2e-5, metadata={"help": "Fine-tuning learning rate."})
    batch_size: int = field(default=16, metadata={"help": "Fine-tuning batch size."})
    max_length: int = field(default=512, metadata={"help": "Max tokens per example."})
    lora_rank: int = field(
        default=0, metadata={"help": "LoRA rank for the fine-tunes; 0 = full fine-tuning."}
    )
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (with --lora-rank > 0)."})
    seed: int = field(default=0, metadata={"help": "Seed of the sampling and of every fine-tune."})
    eval_batch_size: int = field(default=32, metadata={"help": "Batch size of the dev-loss pass."})
    teacher: str = field(
        default="retrain",
        metadata={"help": "Label source: 'retrain' (fine-tune on each subset) or a gradient teacher."},
    )
    teacher_checkpoints: list[str] = field(
        default_factory=list,
        metadata={
            "help": "DDA/TracIn teacher checkpoint folders (repeatable); default: --lm alone.",
            "flag": "--teacher-checkpoint",
        },
    )
    teacher_base_lm: str | None = field(
        default=None, metadata={"help": "DDA teacher: the LM before fine-tuning (debias term)."}
    )
    teacher_db: str | None = field(
        default=None,
        metadata={
            "help": "Index db whose method column made by the teacher's settings holds the train rows' "
            "vectors: read, not recomputed (rows not in it are computed)."
        },
    )
    teacher_params: str = field(
        default="all",
        metadata={
            "help": "Gradient teacher's parameters: all, linear (what --precondition covers), lora, "
            "names:PAT[,PAT]."
        },
    )
    movement: bool = field(
        default=False,
        metadata={
            "help": "Also record how far each fine-tune moves the LM (parameter distance, subset loss "
            "before/after); the labels are unchanged."
        },
    )
    subsets_per_job: int = field(
        default=1,
        metadata={
            "help": "Subset fine-tunes of one split per worker task, on one working copy of the LM reset "
            "between them (full fine-tuning; the labels are the same). 1 = one task per subset."
        },
    )
    workers: int = field(default=1, metadata={"help": "Local worker processes (1 = in this process)."})
    ray: str | None = field(
        default=None,
        metadata={
            "help": "Run jobs as Ray tasks: 'auto', a cluster address, or 'local' (a local Ray with --workers CPUs)."
        },
    )

    def validate(self) -> None:
        super().validate()
        for name in (
            "splits",
            "dev_size",
            "pool_size",
            "subset_size",
            "subsets_per_split",
            "epochs",
            "batch_size",
            "max_length",
            "eval_batch_size",
            "workers",
            "subsets_per_job",
        ):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(
            self.subset_size <= self.pool_size,
            "subset_size",
            f"subset size {self.subset_size} exceeds the pool size {self.pool_size}",
        )
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(bool(self.lm), "lm", "is required (the target LM folder)")
        require(bool(self.out), "out", "is required (the label store folder)")
        require(
            self.lora_rank >= 0, "lora_rank", f"must be >= 0 (0 = full fine-tuning), got {self.lora_rank}"
        )
        require(
            self.subsets_per_job == 1 or self.lora_rank == 0,
            "subsets_per_job",
            "batched subset jobs are for full fine-tuning (lora_rank 0)",
        )
        require(bool(self.teacher), "teacher", "must name a teacher ('retrain' or a gradient teacher)")
        if self.teacher_checkpoints:
            names = checkpoint_teachers()
            require(
                self.teacher in names,
                "teacher_checkpoints",
                f"only for the {', '.join(names)} teachers, not {self.teacher!r}",
            )
        require(
            not self.teacher_base_lm or self.teacher == "dda",
            "teacher_base_lm",
            f"only for the dda teacher, not {self.teacher!r}",
        )
        for name, unset in (("teacher_params", "all"), ("precondition", "none")):
            if getattr(self, name) != unset:
                names = gradient_teachers()
                require(
                    self.teacher in names,
                    name,
                    f"only for the gradient teachers {', '.join(names)}, not {self.teacher!r}",
                )

    def sampling(self) -> dict[str, int]:
        """The keywords of :func:`~airsearch.trainers.labels.sampling.sample_splits` (the splits, their dev
        sets, pools and subsets: AirRep Eq. 8's sampling), from this config."""
        return {name: getattr(self, name) for name in SAMPLING_FIELDS}

    def identity(self) -> dict:
        """The fields that determine the labels (everything but :data:`EXECUTION_FIELDS`)."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS}


SAMPLING_FIELDS = ("splits", "dev_size", "pool_size", "subset_size", "subsets_per_split", "seed")
