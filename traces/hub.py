"""The Hugging Face hub without its noise. Offline, transformers, datasets and huggingface_hub retry each file for
about half a minute and log every retry; here the hub is probed once (a TCP connect, 2 s at most), and when it
cannot be reached the libraries are switched to their offline mode, so a missing model, tokenizer or dataset is
one line at once. Library logging is kept to errors."""

from __future__ import annotations

import logging
import os
import socket
import sys
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

PROBE_S = 2.0
LIBRARIES = ("huggingface_hub", "transformers", "datasets", "urllib3", "filelock", "fsspec", "accelerate", "lm_eval",
             "zeus")  # fmt: skip
VERBOSITY_ENV = ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY", "HF_HUB_VERBOSITY")  # read when each is imported
PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def quiet_libraries() -> None:
    """Library loggers at error level and their progress bars off ("Loading weights", downloads), before or after
    their import; a user's own *_VERBOSITY or *_DISABLE_PROGRESS_BARS setting wins. Our own bars show progress."""
    for name in VERBOSITY_ENV:
        os.environ.setdefault(name, "error")
    for name in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(name, "1")
    if "transformers" in sys.modules and _on("HF_HUB_DISABLE_PROGRESS_BARS"):
        sys.modules["transformers"].utils.logging.disable_progress_bar()  # it read the variable at import
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)


def _on(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _reachable(endpoint: str) -> bool:
    url = urlsplit(endpoint)
    try:
        socket.create_connection(
            (url.hostname or "", url.port or (443 if url.scheme == "https" else 80)), PROBE_S
        ).close()
    except (OSError, ValueError):
        return False
    return True


@cache
def offline() -> bool:
    """Whether the hub is out of reach: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, or its endpoint (HF_ENDPOINT, else huggingface.co)
    takes no connection. Behind a proxy nothing is probed (the proxy decides). Once known to be offline, this
    process's libraries read only local folders and the cache."""
    if _on("HF_HUB_OFFLINE") or _on("TRANSFORMERS_OFFLINE"):
        return True
    if any(os.environ.get(k) for k in PROXY_ENV):
        return False
    if _reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co")):
        return False
    stay_local()
    return True


def stay_local() -> None:
    """Work from local files only, without probing: set where every model and dataset is known to be on disk, so a
    run that needs no network sends nothing (not even a DNS query, or a CONNECT to a proxy)."""
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True
    offline.cache_clear()


def is_local(ref: str) -> bool:
    """A model reference that names a folder (it exists, or it is written as a path) rather than a hub id."""
    return ref.startswith(("/", "./", "../", "~")) or Path(ref).expanduser().exists()


def missing(ref: str, revision: str | None = None, file: str = "config.json") -> str | None:
    """Why `ref` (a local folder or a hub id) cannot be loaded here, or None: a folder that is not there, or a hub
    id that is neither in the local cache nor downloadable now. Nothing is downloaded."""
    if is_local(ref):
        return None if Path(ref).expanduser().is_dir() else f"{ref}: folder not found"
    if not offline():
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(ref, file, revision=revision)
    except ValueError:  # not a valid repo id
        hit = None
    if isinstance(hit, str):
        return None
    return (
        f"{ref!r} is not in the local Hugging Face cache and the hub cannot be reached (offline); "
        f"download it where there is network (`hf download {ref}`), or give a local folder"
    )


__all__ = ["is_local", "missing", "offline", "quiet_libraries", "stay_local"]
