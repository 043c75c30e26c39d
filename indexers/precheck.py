"""A command's inputs checked before any heavy library loads (torch, transformers, LanceDB).

:func:`precheck` looks at the fields a command config has and refuses, with the same one-line errors
the command itself would give, what can be told from the files alone: a missing index directory or
table, an unreadable or malformed query / target file, an encoder that is neither a folder nor a
reachable hub id, and a corpus whose first rows do not parse. The command then runs as before and
checks everything again; this only makes a bad input fail in well under a second instead of after
the imports.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

from airsearch.errors import InputError

CORPUS_ROWS = 1000  # rows of each corpus read before the imports (the build reads them all again)


def precheck(cfg: Any, *, creates_db: bool = False) -> None:
    """Refuse the bad inputs of ``cfg`` (any command config) that need no heavy import."""
    db = getattr(cfg, "db", None)
    if db and not creates_db:
        path = Path(db)
        if not path.is_dir():
            raise InputError("index directory not found (build one with `airsearch index`)", path=path)
        table = getattr(cfg, "table", None)
        if table and not (path / f"{table}.lance").is_dir():
            tables = sorted(
                p.name[: -len(".lance")] for p in path.glob("*.lance") if not p.name.startswith(".")
            )
            raise InputError(f"no table named {table!r}; tables here: {tables or 'none'}", path=path)
    for name in ("queries", "targets"):
        source = getattr(cfg, name, None)
        if source:
            from airsearch.data.corpus import load_queries

            read = cfg.read_options() if hasattr(cfg, "read_options") else {}
            load_queries(source, **read, encoding=getattr(cfg, "encoding", "utf-8"), source_field=name)
    corpus = getattr(cfg, "corpus", None)
    if corpus and hasattr(cfg, "skip_bad_rows"):
        from airsearch.data.corpus import iter_corpus

        read = {k: getattr(cfg, k) for k in ("prompt_field", "response_field", "skip_bad_rows", "encoding")}
        for source in (
            s for s in corpus if Path(s).is_file()
        ):  # folders and hub datasets: the build reads them
            for _ in islice(
                iter_corpus([source], id_field=cfg.id_field or None, source_field="corpus", **read),
                CORPUS_ROWS,
            ):
                pass
    encoder = getattr(cfg, "encoder", None)
    if encoder:
        from airsearch.encoder_source import encoder_folder, resolve_encoder_source

        encoder_folder(resolve_encoder_source(encoder))  # a hub id: downloaded (or refused) here
