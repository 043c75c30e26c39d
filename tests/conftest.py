"""Test settings: offline hubs, quiet progress bars, one torch thread (CI has 2 cores)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("AIRSEARCH_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)

import pytest  # noqa: E402

from tests.fixtures import build_tiny_bert  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random BERT folder (HF format) to use as a fast base encoder."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert") / "bert")
