"""A zoo entry's GPUs reach vLLM through lm-eval's own `vllm` model: its engine is the only thing faked here."""

import os
import sys

import pytest

from messplus.collect.run import open_model
from messplus.common import UserError
from messplus.traces.zoo import ModelSpec

ENGINE = """
CALLS = []


class LLM:  # what lm-eval's VLLM builds with the engine arguments it was handed
    def __init__(self, **engine_args):
        CALLS.append(engine_args)


class SamplingParams: ...


class TokensPrompt: ...
"""


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    """An installed-looking `vllm` whose LLM records its arguments; lm-eval's registry and modules put back after."""
    import lm_eval.models  # noqa: F401  (fills the registry with its lazy entries, `vllm` among them)
    from lm_eval.api.registry import model_registry

    (tmp_path / "vllm" / "lora").mkdir(parents=True)
    (tmp_path / "vllm" / "__init__.py").write_text(ENGINE)
    (tmp_path / "vllm" / "lora" / "__init__.py").write_text("")
    (tmp_path / "vllm" / "lora" / "request.py").write_text("class LoRARequest: ...\n")
    (tmp_path / "vllm" / "tokenizers.py").write_text("def get_tokenizer(*args, **kwargs): ...\n")
    (tmp_path / "vllm-0.0.1.dist-info").mkdir()  # importlib.metadata.version("vllm"), which lm-eval asks
    (tmp_path / "vllm-0.0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.0.1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(model_registry._objs, "vllm", model_registry._objs["vllm"])  # the lazy entry, loaded below
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # open_model sets it; put back after
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.split(".")[0] == "vllm" or name.startswith("lm_eval.models.vllm"):
            del sys.modules[name]


def test_a_zoo_entrys_gpus_reach_vllm_as_tensor_parallel_size(fake_vllm):
    spec = ModelSpec(name="large", hf_id="org/large", backend="vllm", dtype="bfloat16", quantization="awq",
                     gpus=(2, 3, 5), gpu_memory_fraction=0.8, max_length=4096)  # fmt: skip
    with pytest.raises(
        UserError, match="cannot load 'org/large'"
    ):  # its config is not on this machine: after the engine
        open_model(spec, "cuda", 1)
    import vllm

    (engine,) = vllm.CALLS
    assert engine["tensor_parallel_size"] == 3 and os.environ["CUDA_VISIBLE_DEVICES"] == "2,3,5"
    assert engine["model"] == "org/large" and engine["dtype"] == "bfloat16" and engine["quantization"] == "awq"
    assert engine["gpu_memory_utilization"] == 0.8 and engine["max_model_len"] == 4096
