import os
import subprocess
import sys
from pathlib import Path

import pytest

from messplus.traces.io import write_trace
from messplus.traces.synth import synth_trace

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test ever reaches for the hub
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "traces"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real traces not present at {SHARED} (they live in ../shared beside the project, not in it)")
    return SHARED


@pytest.fixture(scope="session")
def small_trace(tmp_path_factory) -> Path:
    """The synthetic zoo at 15% of the paper's request counts: every bench, fast to replay."""
    path = tmp_path_factory.mktemp("traces") / "small.parquet"
    write_trace(synth_trace(scale=0.15), path)
    return path


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a console script as a user would, through its module."""
    tool, *rest = args
    code = f"import sys; from messplus.{tool}.cli import main; sys.argv = {[tool, *rest]!r}; main()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
