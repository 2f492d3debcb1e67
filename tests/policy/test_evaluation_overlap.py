"""evaluate() grades rows while sampling goes on (a core to spare) or each chunk once it is
sampled (torch on every core): either way its verdicts and programs are those of sampling every
chunk first and grading after, row for row (real grader, tiny random Qwen2)."""

from __future__ import annotations

import pytest

from selfregress.evaluation import evaluate
from selfregress.policy import build_prompt, extract_program
from selfregress.sampling import sample
from selfregress.tasks import synthetic_splits


@pytest.fixture(scope="module")
def grader():
    from grader import Grader

    with Grader(workers=2) as g:
        yield g


@pytest.mark.parametrize("overlap", [True, False])
def test_overlapped_grading_equals_sampling_then_grading(eos_heavy, grader, overlap, monkeypatch):
    from selfregress import evaluation

    monkeypatch.setattr(evaluation, "_a_core_to_spare", lambda: overlap)
    tasks = synthetic_splits(seed=0).eval[:5]
    # chunk 4 with 2 samples: chunks of 2 tasks, so the row offsets of later chunks are used
    result = evaluate(eos_heavy, tasks, grader, samples=2, temperature=1.0, max_new_tokens=16,
                      seed=3, chunk=4)
    prompts = [build_prompt(eos_heavy.tokenizer, t.prompt, t.starter_code) for t in tasks]
    programs = []
    for i in range(0, 5, 2):
        out = sample(eos_heavy, prompts[i:i + 2], n=2, max_new_tokens=16, seed=3 + i)
        programs += [extract_program(text) for text in out.texts]
    verdicts = grader.grade_many([(p, tasks[j // 2]) for j, p in enumerate(programs)])
    assert result.programs == programs
    assert result.passed.tolist() == [v.passed for v in verdicts]
    assert result.trials == 10


def test_a_grading_error_reaches_the_caller(eos_heavy):
    class Broken:
        def grade_many(self, pairs):
            raise OSError("sandbox gone")

    # a stand-in: a real grader cannot be made to fail this way on demand
    with pytest.raises(OSError, match="sandbox gone"):
        evaluate(eos_heavy, synthetic_splits(seed=0).eval[:2], Broken(), samples=2,
                 temperature=1.0, max_new_tokens=8, seed=0)
