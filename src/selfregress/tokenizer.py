"""A byte-level BPE tokenizer trained locally with ``tokenizers`` (nothing is downloaded).

Byte-level BPE never meets an unknown character, and a few hundred merges learnt on the
testbed's statements and programs turn a ~120-character program into ~30 tokens, which is
what makes sampling cheap: a character-level vocabulary needs 4x the decoding steps.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train on ``texts`` (deterministic for the same texts in the same order)."""
    bpe = Tokenizer(models.BPE())
    # Digits are split one by one so that numbers in tests and statements stay composable.
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD,
                                   bos_token=None, unk_token=None, padding_side="left")
