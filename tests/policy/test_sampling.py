"""sample() and completion_logprobs() on tiny random models: determinism, stopping, n-expansion,
top-p, and agreement with teacher forcing and with model.generate."""

from __future__ import annotations

import pytest
import torch

from selfregress import logprobs as logprobs_module
from selfregress import sampling
from selfregress.logprobs import nucleus
from selfregress.policy import build_prompt, load_policy
from selfregress.forcing import completion_logprobs
from selfregress.sampling import Samples, encode_prompts, sample
from selfregress.token_draw import sample_tokens


def assert_same_samples(a: Samples, b: Samples, atol: float = 1e-4) -> None:
    assert torch.equal(a.completion_ids, b.completion_ids)
    assert torch.equal(a.completion_mask, b.completion_mask)
    assert a.texts == b.texts
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=atol, rtol=0)


# ---- one token: pure functions ------------------------------------------------------------------
def test_inverse_cdf_hits_each_token_in_proportion_to_its_probability():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3])
    grid = (torch.arange(1000) + 0.5) / 1000                         # evenly spaced uniforms
    logits = probs.log().expand(1000, 4)
    tokens, logprobs = sample_tokens(logits, grid, temperature=1.0)
    assert torch.bincount(tokens, minlength=4).tolist() == [100, 0, 600, 300]
    torch.testing.assert_close(logprobs, probs.log()[tokens])


def test_temperature_scales_logits_and_zero_is_greedy():
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    tokens, logprobs = sample_tokens(logits, torch.tensor([0.5]), temperature=0.5)
    expected = (logits / 0.5).log_softmax(-1)
    assert tokens.item() == 1 and logprobs.item() == pytest.approx(expected[0, 1].item(), abs=1e-6)
    tokens, logprobs = sample_tokens(logits, torch.tensor([0.01]), temperature=0.0)
    assert tokens.item() == 1
    assert logprobs.item() == pytest.approx(logits.log_softmax(-1)[0, 1].item(), abs=1e-6)


def test_banned_tokens_are_never_drawn_but_keep_their_logprob_mass():
    probs = torch.tensor([[0.5, 0.25, 0.25]])
    grid = (torch.arange(100) + 0.5) / 100
    tokens, logprobs = sample_tokens(probs.log().expand(100, 3), grid, temperature=1.0,
                                     banned=torch.tensor([0]))
    assert torch.bincount(tokens, minlength=3).tolist() == [0, 50, 50]
    torch.testing.assert_close(logprobs, torch.full((100,), 0.25).log())


def reference_nucleus(probs: torch.Tensor, top_p: float) -> set[int]:
    """The smallest set of most likely tokens whose mass reaches top_p (a plain loop)."""
    kept, mass = set(), 0.0
    for p, i in sorted(zip(probs.tolist(), range(len(probs))), reverse=True):
        if mass >= top_p:
            break
        kept.add(i)
        mass += p
    return kept


@pytest.mark.parametrize("candidates", [64, 3])  # 3 forces the fall-back to a full sort
def test_nucleus_matches_a_reference_loop(monkeypatch, candidates):
    monkeypatch.setattr(logprobs_module, "NUCLEUS_CANDIDATES", candidates)
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(20, 50) * 2, dim=-1)
    for top_p in (0.3, 0.8, 0.95):
        weights, ids = nucleus(probs, top_p)
        for row in range(20):
            kept = {int(i) for i, w in zip(ids[row], weights[row]) if w > 0}
            assert kept == reference_nucleus(probs[row], top_p)


def test_top_p_only_draws_inside_the_nucleus():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    grid = (torch.arange(1000) + 0.5) / 1000
    tokens, _ = sample_tokens(probs.log().expand(1000, 4), grid, temperature=1.0, top_p=0.75)
    counts = torch.bincount(tokens, minlength=4).tolist()
    assert counts[2:] == [0, 0]                                      # 0.5 + 0.3 >= 0.75
    assert counts[0] == pytest.approx(625, abs=2)                    # renormalised: 0.5 / 0.8
    # the log-prob is that of the renormalised nucleus, log(p / 0.8): what the loss scores
    _, logprobs = sample_tokens(probs.log().expand(2, 4), torch.tensor([0.1, 0.9]), temperature=1.0, top_p=0.75)
    torch.testing.assert_close(logprobs, torch.tensor([0.5 / 0.8, 0.3 / 0.8]).log())


def test_top_p_ties_are_kept_in_token_id_order():
    # 100 equal weights, top_p 0.3: exactly ids 0..29 are ever drawn (logprobs.nucleus's rule).
    grid = (torch.arange(3000) + 0.5) / 3000
    tokens, logprobs = sample_tokens(torch.zeros(3000, 100), grid, temperature=0.7, top_p=0.3)
    assert torch.bincount(tokens, minlength=100).tolist() == [100] * 30 + [0] * 70
    torch.testing.assert_close(logprobs, torch.full((3000,), 1 / 30).log())


# ---- many tokens: sample() -------------------------------------------------------------------------
def test_same_seed_gives_same_samples_and_another_seed_does_not(qwen, prompts):
    first = sample(qwen, prompts, n=2, max_new_tokens=12, seed=3)
    assert_same_samples(first, sample(qwen, prompts, n=2, max_new_tokens=12, seed=3), atol=0)
    other = sample(qwen, prompts, n=2, max_new_tokens=12, seed=4)
    assert not torch.equal(first.completion_ids, other.completion_ids)
    generator = torch.Generator().manual_seed(3)
    assert_same_samples(first, sample(qwen, prompts, n=2, max_new_tokens=12, generator=generator), atol=0)


def test_shapes_masks_and_prompt_index(qwen, prompts):
    out = sample(qwen, prompts, n=3, max_new_tokens=7, seed=0)
    ids, mask = encode_prompts(qwen.tokenizer, prompts)
    assert out.prompt_ids.shape == (9, ids.shape[1]) and torch.equal(out.prompt_ids[::3], ids)
    assert torch.equal(out.prompt_mask[1::3], mask)
    assert out.completion_ids.shape == out.completion_mask.shape == out.logprobs.shape
    assert out.completion_ids.shape[1] <= 7
    assert out.prompt_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len(out) == len(out.texts) == 9
    assert (out.logprobs <= 0).all() and (out.logprobs[out.completion_mask == 0] == 0).all()
    half = out.select([1, 4])
    assert torch.equal(half.completion_ids, out.completion_ids[[1, 4]])
    assert half.texts == [out.texts[1], out.texts[4]]


def test_n_samples_equal_sampling_the_repeated_prompts(qwen, prompts):
    expanded = sample(qwen, prompts, n=3, max_new_tokens=10, seed=7)
    repeated = sample(qwen, [p for p in prompts for _ in range(3)], n=1, max_new_tokens=10, seed=7)
    assert_same_samples(expanded, repeated)


def test_rows_stop_at_eos_and_decoding_ends_when_all_rows_are_done(eos_heavy, prompts):
    eos = eos_heavy.tokenizer.eos_token_id
    pad = eos_heavy.tokenizer.pad_token_id
    out = sample(eos_heavy, prompts, n=8, max_new_tokens=60, seed=0)
    lengths = out.completion_mask.sum(1)
    assert out.completion_ids.shape[1] == lengths.max() < 60      # ended early, trimmed
    assert len(set(lengths.tolist())) > 3                           # rows ended at different steps
    for row in range(len(out)):
        k = int(lengths[row])
        tokens = out.completion_ids[row].tolist()
        assert (out.completion_mask[row, :k] == 1).all()
        if k < 60:
            assert tokens[k - 1] == eos and eos not in tokens[:k - 1]
            assert all(t == pad for t in tokens[k:])
        assert out.texts[row] == eos_heavy.tokenizer.decode(tokens[:k - 1], skip_special_tokens=True,
                                                            clean_up_tokenization_spaces=False)


def test_min_new_tokens_suppresses_eos(eos_heavy, prompts):
    out = sample(eos_heavy, prompts, n=4, max_new_tokens=12, min_new_tokens=6, seed=0)
    assert (out.completion_mask.sum(1) >= 6).all()
    fixed = sample(eos_heavy, prompts, n=2, max_new_tokens=9, min_new_tokens=9, seed=0)
    assert fixed.completion_mask.sum().item() == 6 * 9


@pytest.mark.parametrize("fraction", [0.0, 2.0])  # drop finished rows at once / never
def test_dropping_finished_rows_does_not_change_the_samples(eos_heavy, prompts, monkeypatch, fraction):
    baseline = sample(eos_heavy, prompts, n=8, max_new_tokens=40, seed=1)
    monkeypatch.setattr(sampling, "COMPACT_FRACTION", fraction)
    assert_same_samples(baseline, sample(eos_heavy, prompts, n=8, max_new_tokens=40, seed=1))


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_direct_decode_step_gives_model_forwards_logits(model_dirs, arch):
    """Every decode step of the direct path against ``model(...)`` on the same cache contents:
    padded rows (a mask) and unpadded ones, grouped query heads (4 query heads, 2 KV heads)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfregress.kv_cache import _new_cache, direct_decode_step
    from selfregress.forcing import positions_from_mask
    from selfregress.sampling import encode_prompts

    model = AutoModelForCausalLM.from_pretrained(model_dirs[arch]).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dirs[arch])
    assert model.config.num_attention_heads > model.config.num_key_value_heads   # GQA is exercised
    direct = direct_decode_step(model)
    assert direct is not None
    for texts in (["Print the sum.", "Read n, then n integers. Keep the even ones."], ["Reverse it."] * 2):
        ids, mask = encode_prompts(tokenizer, texts)
        caches = [_new_cache(model, capacity=ids.shape[1] + 8) for _ in range(2)]
        with torch.inference_mode():
            positions = positions_from_mask(mask)
            for cache in caches:
                out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
            attention = torch.cat([mask, torch.ones_like(mask[:, :8])], dim=1)     # the loop's (b, capacity)
            position, width = positions[:, -1:], ids.shape[1]
            tokens = out.logits[:, -1].argmax(-1, keepdim=True)
            for t in range(6):
                position = position + 1
                ours = direct(tokens, attention, position, caches[0])
                theirs = model(input_ids=tokens, attention_mask=attention[:, :width + t + 1], position_ids=position,
                               cache=caches[1], use_cache=True).logits[:, -1]
                torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-5)
                tokens = theirs.argmax(-1, keepdim=True)


def test_direct_decode_samples_as_model_forward_does(eos_heavy, prompts, monkeypatch, model_dirs):
    from transformers import AutoModelForCausalLM

    from selfregress.kv_cache import direct_decode_step

    assert direct_decode_step(eos_heavy.model) is not None     # the tiny Qwen2 takes the direct path
    assert direct_decode_step(AutoModelForCausalLM.from_pretrained(model_dirs["gpt_neox"])) is None
    # padded prompts (a mask) and one prompt n times (no padding: no mask). The logits differ
    # only by rounding (~1e-6), so on these few tokens the draws are the same.
    direct = [sample(eos_heavy, prompts, n=4, max_new_tokens=30, seed=2),
              sample(eos_heavy, prompts[:1], n=3, max_new_tokens=30, seed=2)]
    monkeypatch.setattr(sampling, "direct_decode_step", lambda model: None)
    assert_same_samples(direct[0], sample(eos_heavy, prompts, n=4, max_new_tokens=30, seed=2), atol=1e-5)
    assert_same_samples(direct[1], sample(eos_heavy, prompts[:1], n=3, max_new_tokens=30, seed=2), atol=1e-5)


def test_on_finished_reports_every_row_once_with_its_final_text(eos_heavy, prompts):
    calls: list[tuple[list[int], list[str]]] = []
    out = sample(eos_heavy, prompts, n=4, max_new_tokens=12, seed=5,
                 on_finished=lambda rows, texts: calls.append((rows, texts)))
    reported = [r for rows, _ in calls for r in rows]
    assert sorted(reported) == list(range(12))
    assert len(calls) > 1                                       # rows were reported as they ended
    assert {r: t for rows, texts in calls for r, t in zip(rows, texts)} == dict(enumerate(out.texts))
    assert int(out.completion_mask.sum(1).max()) == 12          # some rows were cut at the limit


def test_top_p_near_zero_is_greedy(qwen, prompts):
    greedy = sample(qwen, prompts, max_new_tokens=8, temperature=0.0)
    nucleus = sample(qwen, prompts, max_new_tokens=8, top_p=1e-6, seed=0)
    assert torch.equal(greedy.completion_ids, nucleus.completion_ids)


def test_sampling_restores_training_mode(qwen, prompts):
    qwen.model.train()
    sample(qwen, prompts[:1], max_new_tokens=2, seed=0)
    assert qwen.model.training


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(max_new_tokens=0), dict(temperature=-1.0),
                                    dict(top_p=0.0), dict(min_new_tokens=5, max_new_tokens=4),
                                    dict(seed=1, generator=torch.Generator())])
def test_bad_arguments_are_refused(qwen, prompts, kwargs):
    with pytest.raises(ValueError):
        sample(qwen, prompts, **kwargs)


def test_too_long_a_request_is_refused_with_a_clear_message(qwen, prompts):
    with pytest.raises(ValueError, match="positions"):
        sample(qwen, prompts, max_new_tokens=1000)


# ---- every architecture, one code path ----------------------------------------------------------
@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt_neox"])
def test_greedy_sampling_matches_model_generate(model_dirs, arch):
    """The KV cache, left padding and positions agree with transformers' own generate()."""
    policy = load_policy(model_dirs[arch], device="cpu")
    prompts = [build_prompt(policy.tokenizer, s) for s in ("Print the sum.", "Read n, then n integers.")]
    out = sample(policy, prompts, max_new_tokens=10, temperature=0.0)
    ids, mask = encode_prompts(policy.tokenizer, prompts)
    with torch.no_grad():
        reference = policy.model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                          max_new_tokens=10, pad_token_id=policy.tokenizer.eos_token_id)
    reference = reference[:, ids.shape[1]:]
    for row in range(2):
        k = int(out.completion_mask[row].sum())
        assert out.completion_ids[row, :k].tolist() == reference[row, :k].tolist()


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt_neox"])
def test_teacher_forced_logprobs_equal_sampling_logprobs(model_dirs, arch):
    policy = load_policy(model_dirs[arch], device="cpu")
    prompts = [build_prompt(policy.tokenizer, s) for s in ("Print the sum.", "Read n, then n integers.")]
    out = sample(policy, prompts, n=3, max_new_tokens=12, seed=0)
    logprobs, entropy = completion_logprobs(policy.model, out)
    assert logprobs.requires_grad
    torch.testing.assert_close(logprobs.detach(), out.logprobs, atol=1e-4, rtol=0)
    assert (entropy[out.completion_mask == 1] > 0).all()
    assert (entropy[out.completion_mask == 0] == 0).all()


def test_logprobs_agree_at_another_temperature_and_after_eos(eos_heavy, prompts):
    out = sample(eos_heavy, prompts, n=4, max_new_tokens=20, temperature=0.7, seed=2)
    assert (out.completion_mask == 0).any()                        # some rows ended early
    logprobs, entropy = completion_logprobs(eos_heavy.model, out, temperature=0.7)
    torch.testing.assert_close(logprobs.detach(), out.logprobs, atol=1e-4, rtol=0)
    # The entropy is that of the same tempered distribution.
    full = torch.cat([out.prompt_ids, out.completion_ids], 1)
    mask = torch.cat([out.prompt_mask, out.completion_mask], 1)
    with torch.no_grad():
        logits = eos_heavy.model(input_ids=full, attention_mask=mask,
                                 position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    steps = out.completion_ids.shape[1]
    log_p = (logits[:, -steps - 1:-1] / 0.7).log_softmax(-1)
    expected = -(log_p.exp() * log_p).sum(-1) * out.completion_mask
    torch.testing.assert_close(entropy.detach(), expected, atol=1e-4, rtol=0)
    # With a nucleus too: the sampler's log p~ and the loss's agree (one truncation rule), and
    # they differ from the untruncated tempered log-prob wherever the nucleus cut anything.
    out = sample(eos_heavy, prompts, n=4, max_new_tokens=20, temperature=0.7, top_p=0.8, seed=2)
    logprobs, _ = completion_logprobs(eos_heavy.model, out, temperature=0.7, top_p=0.8)
    torch.testing.assert_close(logprobs.detach(), out.logprobs, atol=1e-4, rtol=0)
    untruncated, _ = completion_logprobs(eos_heavy.model, out, temperature=0.7)
    assert (logprobs.detach() - untruncated.detach())[out.completion_mask == 1].min() > 1e-3


def test_gradients_flow_through_completion_logprobs(qwen, prompts):
    out = sample(qwen, prompts, n=2, max_new_tokens=6, seed=0)
    logprobs, _ = completion_logprobs(qwen.model, out)
    (logprobs * out.completion_mask).sum().backward()
    grads = [p.grad for p in qwen.model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_bf16_policy_samples(qwen_dir, prompts):
    policy = load_policy(qwen_dir, device="cpu", dtype="bfloat16")
    assert next(policy.model.parameters()).dtype == torch.bfloat16
    out = sample(policy, prompts, n=2, max_new_tokens=5, seed=0)
    assert out.logprobs.dtype == torch.float32 and torch.isfinite(out.logprobs).all()
