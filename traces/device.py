"""The one device rule every stage shares: `auto` means the GPU when torch sees one."""

from __future__ import annotations

from traces.errors import TraceError


def pick_device(device: str) -> str:
    """auto | cpu | cuda -> cpu | cuda; anything else is a one-line error."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise TraceError(f"--device must be auto, cpu or cuda, not {device!r}")
    return device
