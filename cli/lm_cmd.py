"""``airsearch lm``: build, import and inspect target language models."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option

from airsearch.lm.tiny import TinyLMConfig

if TYPE_CHECKING:
    from airsearch.lm.info import GgufImportSummary, LmInfo, TinyLmSummary


@click.group("lm")
def lm() -> None:
    """Target language models: build a tiny CPU one, import a GGUF file, inspect a folder."""


@lm.command("build-tiny")
@handle_errors  # outermost, so that bad option values (validated by config_options) print one line
@click.option("--corpus", "corpus", multiple=True, required=True, help="Corpus file(s) to train on.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output model folder.")
@click.option("--skip-bad-rows", is_flag=True, help="Skip unreadable corpus rows instead of failing.")
@config_options(TinyLMConfig)
@json_option
def build_tiny(
    corpus: tuple[str, ...], out: str, skip_bad_rows: bool, config: TinyLMConfig, as_json: bool
) -> None:
    """Train a BPE tokenizer and pre-train a tiny Llama on a corpus; write an ordinary HF folder.

    The defaults (hidden 128, 2 layers, 4k vocabulary, 1,000 steps of 8x128 tokens) give about 0.9M
    parameters in a few CPU minutes.
    """
    from airsearch.data.corpus import load_corpus
    from airsearch.lm.tiny import build_tiny_lm

    started = time.perf_counter()
    data = load_corpus(list(corpus), skip_bad_rows=skip_bad_rows)
    from airsearch.lm.info import tiny_lm_summary

    path = build_tiny_lm(data.examples, out, config)
    summary = tiny_lm_summary(
        path,
        examples=len(data.examples),
        corpus_fingerprint=data.fingerprint,
        seconds=time.perf_counter() - started,
    )
    emit(summary, as_json, _human_tiny)


def _human_tiny(r: TinyLmSummary) -> str:
    return (
        f"tiny LM written to {r.out}: {r.num_parameters or 0:,} parameters, vocabulary {r.vocab_size}, "
        f"{r.examples} examples, loss {r.loss_first} -> {r.loss_last} in {r.seconds} s"
    )


@lm.command("import-gguf")
@click.argument("gguf_file", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output model folder.")
@json_option
@handle_errors
def import_gguf_cmd(gguf_file: str, out: str, as_json: bool) -> None:
    """Dequantise a GGUF causal LM into a plain float32 safetensors HF folder (needs airsearch[gguf])."""
    from airsearch.lm.gguf import import_gguf
    from airsearch.lm.info import gguf_import_summary

    started = time.perf_counter()
    path = import_gguf(gguf_file, out)
    emit(gguf_import_summary(path, seconds=time.perf_counter() - started), as_json, _human_gguf)


def _human_gguf(r: GgufImportSummary) -> str:
    rec = r.record  # the provenance record written by import_gguf
    return (
        f"{rec.get('architecture')} with {rec.get('num_parameters', 0):,} parameters written to {r.out} "
        f"(chat template: {'yes' if rec.get('chat_template') else 'no'})"
    )


@lm.command("info")
@click.argument("model_dir", type=click.Path())
@click.option("--fingerprint", is_flag=True, help="Compute the weights fingerprint (loads the model).")
@json_option
@handle_errors
def info(model_dir: str, fingerprint: bool, as_json: bool) -> None:
    """Describe a target LM folder: architecture, size, tokenizer, chat template, provenance."""
    from airsearch.lm.info import lm_info

    emit(lm_info(model_dir, fingerprint=fingerprint), as_json, _human_info)


def _human_info(r: LmInfo) -> str:
    lines = [
        f"{r.path}: {r.architecture}, {r.num_parameters:,} parameters ({r.dtype})",
        f"  layers {r.layers}, hidden {r.hidden_size}, heads {r.heads}, vocabulary {r.vocab_size}",
        f"  formatting: {r.format}",
        f"  special tokens: {', '.join(f'{k}={v!r}' for k, v in r.special_tokens.items() if v is not None)}",
    ]
    rec = r.recorded  # the provenance record airsearch wrote into the folder
    if rec.get("source"):
        lines.append(f"  made from: {rec['source']}")
    if rec.get("loss_last") is not None:
        lines.append(f"  pre-training loss {rec.get('loss_first')} -> {rec['loss_last']}")
    if r.fingerprint:
        lines.append(f"  weights fingerprint: {r.fingerprint}")
    return "\n".join(lines)
