"""`collect quickcheck`: a tiny zoo and a local lm-eval task, built on the spot: no download, seconds on CPU.

The task asks about six words, each with its own right answer (yes, no or maybe), twice over. tiny-a is a random
Llama and scores about a third; tiny-b, twice as wide, is trained on the questions for a moment and scores nearly
all of them, so the collected trace holds two models that really differ, as a zoo does.
"""

from __future__ import annotations

import json
from pathlib import Path

NEUTRAL = [
    "the river runs past the old mill and under the stone bridge",
    "a small bird sat on the fence while rain fell over the quiet town",
    "people walked along the road to the market in the morning light",
]
WORDS = ["bridge", "road", "market", "town", "fence", "river"]
CHOICES = ["yes", "no", "maybe"]


def question(i: int) -> dict:
    """Doc i: word i % 6, whose right answer is always the same, CHOICES[i % 3]."""
    return {"question": f"Is the {WORDS[i % 6]} near the mill?", "choices": CHOICES, "answer": i % 3}


def tiny_tokenizer(path: Path | None = None):
    """A byte-level BPE tokenizer of 300 tokens trained on NEUTRAL (saved to `path` when given)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(NEUTRAL * 10, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    if path is not None:
        fast.save_pretrained(path)
    return fast


def tiny_llama(path: Path, hidden: int, seed: int, train_steps: int = 0) -> Path:
    """A random 2-layer Llama of width `hidden`, then `train_steps` Adam steps on the task's six questions followed
    by their right answers (0: left random); saved with the tiny tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fast = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=fast.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg)
    texts = [f"{d['question']} {d['choices'][d['answer']]}" for d in map(question, range(len(WORDS)))]
    ids = [fast(t, return_tensors="pt")["input_ids"] for t in texts]  # lm-eval joins question and answer by " "
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(train_steps):
        opt.zero_grad()
        sum(model(input_ids=x, labels=x).loss for x in ids).backward()
        opt.step()
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def toy_task(folder: Path, n_docs: int = 12) -> Path:
    """The local lm-eval task `toyqa` (n_docs questions, multiple choice, acc and acc_norm) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.jsonl").write_text("\n".join(json.dumps(question(i)) for i in range(n_docs)))
    (folder / "toyqa.yaml").write_text(
        "task: toyqa\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {folder / 'toy.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: answer\nmetric_list:\n'
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\nmetadata:\n  version: 1.0\n"
    )
    return folder


def tiny_zoo(root: Path) -> Path:
    """zoo.toml naming tiny-a (random) and tiny-b (trained), both saved under root."""
    a = tiny_llama(root / "tiny-a", 32, seed=1)
    b = tiny_llama(root / "tiny-b", 64, seed=2, train_steps=40)
    zoo = root / "zoo.toml"
    zoo.write_text(
        f'[[models]]\nname = "tiny-a"\nhf_id = "{a}"\ndtype = "float32"\n\n'
        f'[[models]]\nname = "tiny-b"\nhf_id = "{b}"\ndtype = "float32"\n'
    )
    return zoo
