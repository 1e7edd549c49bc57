import os
import subprocess
import sys
from dataclasses import dataclass
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


def cli_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a console script as a user would, through its module, in a process of its own (for what only a process
    shows: its imports, exit on a signal, a closed stdout). Seconds each: tests/test_smoke.py runs one a command."""
    tool, *rest = args
    code = f"import sys; from messplus.{tool}.cli import main; sys.argv = {[tool, *rest]!r}; main()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)


@dataclass(frozen=True)
class Ran:
    """What run_main saw, as subprocess.CompletedProcess names it."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, cwd: Path | None = None) -> Ran:
    """Run a console script's main() as a user would, in this process (run_main)."""
    return run_main(*args, cwd=cwd)


def run_main(tool: str, *args: str, cwd: Path | None = None) -> Ran:
    """A console script's main() in this process, as `cli` runs it in another: its argv and working directory, its
    stdout and stderr captured (logging's too, which a process would print there), an escaping exception printed
    as a traceback with exit code 1. Costs no process start: torch, polars and numba are imported already."""
    import contextlib
    import io
    import logging
    import traceback
    from importlib import import_module

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = (sys.argv, os.getcwd(), root.handlers[:], root.level)
    sys.argv, root.handlers = [tool, *args], [handler]
    root.setLevel(logging.WARNING)
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                import_module(f"messplus.{tool}.cli").main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # what a process would die of: a traceback on stderr, exit code 1
                traceback.print_exc(file=err)
                code = 1
    finally:
        sys.argv, root.handlers = saved[0], saved[2]
        root.setLevel(saved[3])
        os.chdir(saved[1])
    return Ran(code, out.getvalue(), err.getvalue())


NEUTRAL = ["the river runs past the old mill", "a small bird sat on the fence", "rain fell over the quiet town"] * 5


@pytest.fixture(scope="session")
def tiny_modernbert(tmp_path_factory):
    """A tiny random ModernBERT and its tokenizer, saved to a folder: the real encoder path, with no download."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import ModernBertConfig, ModernBertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(NEUTRAL, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(0)
    cfg = ModernBertConfig(
        vocab_size=fast.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        pad_token_id=fast.pad_token_id, cls_token_id=cls, sep_token_id=sep, bos_token_id=cls, eos_token_id=sep,
        global_attn_every_n_layers=1, max_position_embeddings=64,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny-modernbert")
    ModernBertModel(cfg).save_pretrained(path)
    fast.save_pretrained(path)
    return str(path)
