"""A tiny zoo and a local lm-eval task, built on the spot: no download, a few seconds on CPU."""

import json
from pathlib import Path

NEUTRAL = [
    "the river runs past the old mill and under the stone bridge",
    "a small bird sat on the fence while rain fell over the quiet town",
    "people walked along the road to the market in the morning light",
]


def tiny_tokenizer(path: Path | None = None):
    """A byte-level BPE tokenizer of 300 tokens trained on NEUTRAL (saved to `path` when given)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(NEUTRAL * 10, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    if path is not None:
        fast.save_pretrained(path)
    return fast


def tiny_llama(path: Path, hidden: int, seed: int) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fast = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=fast.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def toy_task(folder: Path, n_docs: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    docs = [{"question": f"Is the {w} near the mill?", "choices": ["yes", "no", "maybe"], "answer": i % 3}
            for i, w in enumerate(["bridge", "road", "market", "town", "fence", "river"] * (n_docs // 6 + 1))][:n_docs]  # fmt: skip
    (folder / "toy.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    (folder / "toyqa.yaml").write_text(
        "task: toyqa\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {folder / 'toy.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: answer\nmetric_list:\n'
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\nmetadata:\n  version: 1.0\n"
    )
    return folder


def tiny_zoo(root: Path) -> Path:
    a = tiny_llama(root / "tiny-a", 32, seed=1)
    b = tiny_llama(root / "tiny-b", 64, seed=2)
    zoo = root / "zoo.toml"
    zoo.write_text(
        f'[[models]]\nname = "tiny-a"\nhf_id = "{a}"\ndtype = "float32"\n\n'
        f'[[models]]\nname = "tiny-b"\nhf_id = "{b}"\ndtype = "float32"\n'
    )
    return zoo


if __name__ == "__main__":  # python -m tests.collect_fixtures DIR: the README's CPU quick check
    import sys

    root = Path(sys.argv[1] if len(sys.argv) > 1 else "data/quickcheck").resolve()
    print(f"zoo: {tiny_zoo(root)}\ntask folder: {toy_task(root / 'task')}")
