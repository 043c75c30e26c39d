"""Distributed indexing on Ray (``airsearch index CORPUS --db DIR --ray auto|ADDRESS|local``).

The work of :func:`airsearch.indexers.build.build_index` spread over a Ray cluster:

1. **The driver reads the corpus once** with the one loader (:func:`airsearch.data.corpus.iter_corpus`):
   it counts the rows, computes the corpus fingerprint, refuses bad rows and (appending) ids already
   in the table, and fixes the metadata columns from the first chunk, exactly as a single-machine build.
   Nothing is encoded before the whole corpus has been found good.
2. **Ray Data reads it again in parallel**: the rows left to encode are cut into contiguous ranges, and
   each read task streams its range through the same loader (same ids, same rows) in chunks of
   ``chunk_size`` rows.
3. **Encoder actors** (one model each, one GPU each on a GPU cluster) encode a chunk and write it as a
   Lance fragment into the build's staging table folder, in parallel; they return the fragment
   metadata and the fingerprint of the rows they encoded.
4. **One commit**: the driver checks that the fragments cover exactly the rows it read (the corpus
   fingerprints must add up), orders them by row position (the table keeps corpus order) and commits
   them as one version of the staging table (``LanceDataset.commit``). From there the build finishes as
   on one machine (``_Build.finish``): compaction, ANN and BM25 indexes,
   metadata, and the staging table renamed into place (or added to the live table in one commit).

Killed before the commit, the build leaves the live table untouched and a staging folder of
uncommitted fragment files; the next run of the same command finds no committed version in it and
starts that folder over (:meth:`airsearch.indexers.staging.Staging.claim`). Killed after it, the next run
resumes with nothing left to encode.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
from airsearch.indexers.rows import chunked
from airsearch.indexers.staging import Staging

from airsearch.data.corpus import CorpusHasher, SkippedRow, iter_corpus
from airsearch.data.example import Example
from airsearch.errors import AirsearchError, InputError, MissingDependency
from airsearch.progress import announce, progress

if TYPE_CHECKING:
    from airsearch.indexers.config import IndexConfig
    from airsearch.indexers.table import IndexTable, TableMeta

    from airsearch.encoder import AirRepEncoder


class RayBuild(Protocol):
    """What a Ray build reads of the single-machine build it spreads out (``build._Build`` in
    :mod:`airsearch.indexers.build`, which calls :func:`run_on_ray`; structural, so this module does not
    import the one that calls it)."""

    cfg: IndexConfig
    enc: AirRepEncoder
    staging: Staging
    live: IndexTable | None
    read: dict[str, Any]
    mode: str
    encoder_given: bool

    def resume_point(self) -> int: ...

    def table_meta(self, first: list[Example] | None) -> tuple[TableMeta, Any]: ...

    def finish(self, *parts: Any, workers: int | None = None) -> Any: ...  # (meta, hasher, skipped, resumed)


RANGES_PER_WORKER = 4  # read ranges per encoder actor (finer ranges balance the load better)


def run_on_ray(build: RayBuild) -> Any:
    """Encode the rows of ``build`` that are not yet in its staging table on Ray, commit them as one
    version, and finish the build as a single-machine build does."""
    cfg = build.cfg
    if build.encoder_given:
        raise InputError("a Ray build loads the encoder on every actor: give its folder or name", field="ray")
    resumed = build.resume_point()
    skipped: list[SkippedRow] = []
    hasher, first = CorpusHasher(), []
    known = build.live.ids() if build.live is not None and not cfg.upsert else None
    rows = iter_corpus(list(cfg.corpus), skipped=skipped, **build.read)
    for chunk in chunked(rows, cfg.chunk_size):  # the driver's pass: count, fingerprint, checks
        if known is not None:
            build.live.refuse_known_ids([e.id for e in chunk], known)  # type: ignore[union-attr]
        for ex in chunk:
            hasher.add(ex)
        first = first or chunk
    if hasher.count == 0:
        raise InputError("no rows to index", field="corpus")
    meta, schema = build.table_meta(first)
    todo = hasher.count - resumed
    with ray_session(cfg.ray, cfg.workers) as (ray, workers, gpus):
        announce(
            f"plan: index {hasher.count:,} rows of {', '.join(map(str, cfg.corpus[:3]))} -> table "
            f"'{cfg.table}' in {cfg.db} ({build.mode}) on Ray: {workers} encoder actor(s)"
            + (f" on {gpus} GPU(s)" if gpus else "")
            + (f"; resuming: {resumed:,} rows were already encoded" if resumed else "")
        )
        if todo > 0:
            fragments, encoded = _encode(
                ray, build, schema, meta.columns, resumed, hasher.count, workers, gpus
            )
            if encoded.merge(build.staging.state.hasher()).hexdigest() != hasher.hexdigest():
                raise InputError(
                    "the corpus changed while it was being indexed (the rows encoded on Ray are not the "
                    "rows read first); run the command again",
                    field="corpus",
                )
            build.staging.commit_fragments(fragments, schema, rows=hasher.count, hasher=hasher)
    return build.finish(meta, hasher, skipped, resumed, workers=workers)


def _encode(
    ray: Any,
    build: RayBuild,
    schema: pa.Schema,
    columns: dict[str, str],
    start: int,
    stop: int,
    workers: int,
    gpus: int,
) -> tuple[list[Any], CorpusHasher]:
    """Read rows ``[start, stop)`` with Ray Data, encode and write them with ``workers`` actors;
    returns the fragments in row order and the fingerprint of the rows encoded."""
    from lance.fragment import FragmentMetadata

    cfg = build.cfg
    n_chunks = -(-(stop - start) // cfg.chunk_size)
    n_ranges = min(n_chunks, RANGES_PER_WORKER * workers)
    bounds = [start + (stop - start) * i // n_ranges for i in range(n_ranges + 1)]
    ranges = [{"start": a, "stop": b} for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    cpus = float(ray.cluster_resources().get("CPU", 1))
    per_actor = max(1.0, cpus // workers) if not gpus else 1.0
    read = {"sources": list(cfg.corpus), "read": build.read, "chunk_size": cfg.chunk_size}
    encoder = {
        "source": cfg.encoder,
        "runtime": cfg.runtime,
        "quantize": cfg.quantize,
        "fingerprint": build.enc.fingerprint,
        "device": "cuda" if gpus else "cpu",
        "threads": int(per_actor),
        "batch_size": cfg.batch_size,
        "uri": str(build.staging.dir),
        "schema": schema,
        "columns": columns,
    }
    data = ray.data.from_items(ranges, override_num_blocks=len(ranges))
    chunks = data.map_batches(read_ranges, batch_size=1, batch_format="pyarrow", fn_kwargs=read, num_cpus=0)
    written = chunks.map_batches(
        EncoderActor,
        batch_size=1,
        batch_format="pyarrow",
        fn_constructor_kwargs=encoder,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=per_actor,
        num_gpus=1 if gpus else 0,
    )
    parts: list[tuple[int, int, list[str]]] = []
    encoded = CorpusHasher()
    bar = progress(desc=f"indexing {cfg.table} on Ray", total=stop, initial=start, unit="row")
    try:
        for row in written.iter_rows():
            parts.append((row["start"], row["rows"], json.loads(row["fragments"])))
            encoded = encoded.merge(_hasher(row["hash_count"], row["hash_total"]))
            bar.update(row["rows"])
    except Exception as exc:  # a failed actor or task: surface the user-facing error it carried
        cause = getattr(exc, "cause", None)
        if isinstance(cause, AirsearchError):
            raise cause from None
        raise
    finally:
        bar.close()
    parts.sort()
    position = start
    for first, count, _ in parts:  # contiguous, no row twice, none missing
        if first != position:
            raise InputError(f"the Ray build lost rows {position}..{first - 1}; run the command again")
        position += count
    fragments = [FragmentMetadata.from_json(json.dumps(f)) for _, _, frags in parts for f in frags]
    return fragments, encoded


def read_ranges(
    batch: pa.Table, sources: list[str], read: dict[str, Any], chunk_size: int
) -> Iterator[pa.Table]:
    """Ray Data read task: the rows ``[start, stop)`` of the corpus, in chunks (one pickled list of
    :class:`Example` per row of the output, with its first row position)."""
    for start, stop in zip(batch.column("start").to_pylist(), batch.column("stop").to_pylist(), strict=True):
        rows = islice(iter_corpus(sources, **read), start, stop)
        position = start
        for chunk in chunked(rows, chunk_size):
            yield pa.table({"start": [position], "examples": [pickle.dumps(chunk)]})
            position += len(chunk)


class EncoderActor:
    """A Ray actor holding one encoder: encodes a chunk and writes it as Lance fragment(s) of the
    staging table (not committed: the driver commits all of them at once)."""

    def __init__(
        self,
        *,
        source: str,
        runtime: str,
        quantize: str,
        fingerprint: str,
        device: str,
        threads: int,
        batch_size: int,
        uri: str,
        schema: pa.Schema,
        columns: dict[str, str],
    ) -> None:
        import torch

        from airsearch.encoder import AirRepEncoder

        torch.set_num_threads(max(1, threads))
        os.environ.setdefault("AIRSEARCH_QUIET", "1")
        self.encoder = AirRepEncoder.load(source, device=device, runtime=runtime, quantize=quantize)
        if self.encoder.fingerprint != fingerprint:
            raise InputError(
                f"the encoder {source!r} on this Ray node is not the driver's (fingerprint "
                f"{self.encoder.fingerprint} != {fingerprint}); give every node the same encoder folder",
                field="encoder",
            )
        self.batch_size, self.uri, self.schema, self.columns = batch_size, uri, schema, columns

    def __call__(self, batch: pa.Table) -> pa.Table:
        from airsearch.indexers.rows import to_batch
        from lance.fragment import write_fragments

        out: dict[str, list[Any]] = {
            k: [] for k in ("start", "rows", "fragments", "hash_count", "hash_total")
        }
        for start, blob in zip(
            batch.column("start").to_pylist(), batch.column("examples").to_pylist(), strict=True
        ):
            examples: list[Example] = pickle.loads(blob)  # our own read task's output
            vectors = self.encoder.encode(examples, batch_size=self.batch_size, show_progress=False)
            table = pa.Table.from_batches([to_batch(examples, vectors, self.schema, self.columns)])
            fragments = write_fragments(table, self.uri, schema=self.schema)
            hasher = CorpusHasher()
            for ex in examples:
                hasher.add(ex)
            out["start"].append(start)
            out["rows"].append(len(examples))
            out["fragments"].append(json.dumps([f.to_json() for f in fragments]))
            out["hash_count"].append(hasher.count)
            out["hash_total"].append(f"{hasher.total:x}")
        return pa.table(out)


class ray_session:
    """Ray for one build: the running session, else ``ray.init`` by ``address`` (``local`` starts a
    local cluster), shut down again if this build started it. Yields ``(ray, workers, gpus)``."""

    def __init__(self, address: str | None, workers: int | None) -> None:
        self.address, self.workers, self.started = address, workers, False

    def __enter__(self) -> tuple[Any, int, int]:
        try:
            import ray
            import ray.data
        except ImportError:
            raise MissingDependency("ray", "distributed", "indexing on Ray") from None
        if not ray.is_initialized():
            try:
                if self.address == "local":
                    ray.init(include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(address=self.address, log_to_driver=False)
            except ConnectionError as e:
                raise InputError(
                    f"cannot reach a Ray cluster at {self.address!r} ({e}); start one (ray start --head) or "
                    "use 'local'",
                    field="ray",
                ) from None
            self.started = True
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the build's own bar counts rows
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # nor Ray Data's execution plan lines
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        workers = self.workers or (gpus if gpus else max(1, cpus // 2))
        self.ray = ray
        return ray, workers, gpus

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.ray.shutdown()


def _hasher(count: int, total: str) -> CorpusHasher:
    h = CorpusHasher()
    h.count, h.total = int(count), int(total, 16)
    return h
