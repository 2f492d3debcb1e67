"""build_prompt (plain and chat templates) and the tokenization of prompts."""

from __future__ import annotations

from selfregress.policy import PLAIN_TEMPLATE, build_prompt
from selfregress.sampling import encode_prompts

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_plain_template_is_exactly_the_sft_format(make_tokenizer):
    tokenizer = make_tokenizer()
    assert PLAIN_TEMPLATE == "# Problem\n{statement}\n# Solution\n"
    assert build_prompt(tokenizer, "Print 1.") == "# Problem\nPrint 1.\n# Solution\n"
    with_starter = build_prompt(tokenizer, "Add.", "def add(a, b):\n")
    assert with_starter == "# Problem\nAdd.\ndef add(a, b):\n# Solution\n"


def test_chat_template_asks_for_a_python_block_and_opens_the_answer(make_tokenizer):
    tokenizer = make_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    prompt = build_prompt(tokenizer, "Print the sum of two integers.")
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
    assert "Print the sum of two integers." in prompt and "```python" in prompt
    assert "standard input" in prompt
    with_starter = build_prompt(tokenizer, "Add.", "def add(a, b):")
    assert "```python\ndef add(a, b):\n```" in with_starter and "standard input" not in with_starter


def test_prompts_are_left_padded(make_tokenizer):
    tokenizer = make_tokenizer()
    ids, mask = encode_prompts(tokenizer, ["a", "Read n, then n integers."])
    lengths = mask.sum(1)
    assert lengths[0] < lengths[1] == ids.shape[1]
    assert mask[0, -1] == 1 and mask[0, 0] == 0                     # padding on the left
    assert (ids[0, : ids.shape[1] - lengths[0]] == tokenizer.pad_token_id).all()


def test_plain_prompts_get_bos_and_chat_prompts_do_not_get_it_twice(make_tokenizer):
    tokenizer = make_tokenizer(bos=True, pad=False)
    ids, mask = encode_prompts(tokenizer, [build_prompt(tokenizer, "Print 1.")])
    assert ids[0, 0].item() == tokenizer.bos_token_id
    tokenizer.chat_template = "{{ bos_token }}" + CHAT_TEMPLATE
    ids, mask = encode_prompts(tokenizer, [build_prompt(tokenizer, "Print 1.")])
    assert ids[0].tolist().count(tokenizer.bos_token_id) == 1


def test_the_chat_templates_end_of_turn_token_stops_sampling(make_tokenizer):
    from selfregress.sampling import stop_token_ids

    tokenizer = make_tokenizer()
    assert stop_token_ids(None, tokenizer) == [tokenizer.eos_token_id]
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_ids(None, tokenizer) == sorted([tokenizer.eos_token_id, end_of_turn])
