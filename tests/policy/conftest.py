"""Tiny randomly initialised causal LMs of three architectures, saved to disk with a tokenizer
trained here: nothing is downloaded. Each loads through ``load_policy`` like any checkpoint."""

from __future__ import annotations

import pytest
import torch

LINES = [
    "Read n, then n integers. Keep only the even numbers, then print their sum.",
    "The first line holds n; the second, n integers. Print the largest one.",
    "n = int(input())\na = list(map(int, input().split()))\nprint(sum(x for x in a if x % 2 == 0))",
    "def solve(s):\n    return s[::-1]\nprint(solve(input()))",
    "```python\nprint(max(a))\n```",
]


def train_tokenizer(*, bos: bool = False, pad: bool = True):
    """A byte-level BPE of a few hundred tokens, EOS (and optionally PAD and a prepended BOS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>"] + (["<|pad|>"] if pad else []) + (["<s>"] if bos else [])
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(LINES * 40, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if bos:  # Llama-style: the tokenizer prepends BOS to every plain text
        bpe.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", bpe.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",
                                   pad_token="<|pad|>" if pad else None,
                                   bos_token="<s>" if bos else None)


def build_config(arch: str, tokenizer):
    from transformers import GPTNeoXConfig, LlamaConfig, Qwen2Config

    common = dict(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=128, max_position_embeddings=256,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                  bos_token_id=tokenizer.bos_token_id)
    if arch == "qwen2":
        return Qwen2Config(num_key_value_heads=2, tie_word_embeddings=True, **common)
    if arch == "llama":
        return LlamaConfig(num_key_value_heads=2, tie_word_embeddings=False, **common)
    return GPTNeoXConfig(rotary_pct=0.5, tie_word_embeddings=False, **common)


def save_tiny_model(folder, arch: str) -> str:
    from transformers import AutoModelForCausalLM

    tokenizer = train_tokenizer(bos=arch == "llama", pad=arch != "gpt_neox")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(build_config(arch, tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def make_tokenizer():
    """``train_tokenizer`` itself, for tests that build tokenizers of their own."""
    return train_tokenizer


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("policy_models")
    return {arch: save_tiny_model(root / arch, arch) for arch in ("qwen2", "llama", "gpt_neox")}


@pytest.fixture(scope="session")
def qwen_dir(model_dirs) -> str:
    return model_dirs["qwen2"]


@pytest.fixture
def qwen(qwen_dir):
    from selfregress.policy import load_policy

    return load_policy(qwen_dir, device="cpu")


@pytest.fixture
def eos_heavy(qwen):
    """The tiny Qwen2 with a +4.5 logit bias on EOS (p ~ 0.2 a step): rows end after a handful
    of tokens, at different steps, which exercises stopping and the dropping of finished rows."""
    old = qwen.model.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[qwen.tokenizer.eos_token_id] = 4.5
    qwen.model.lm_head = head
    return qwen


@pytest.fixture
def prompts(qwen) -> list[str]:
    from selfregress.policy import build_prompt

    return [build_prompt(qwen.tokenizer, statement) for statement in
            ("Print the sum.", "Read n, then n integers. Keep only the even numbers.",
             "Reverse the string.")]
