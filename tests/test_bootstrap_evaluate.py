"""bootstrap and evaluate through the real code: determinism, registry, CLI errors."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from selfregress.bootstrap import SHIPPED_BASE, BootstrapConfig, bootstrap, train_base

# band_low = 0 stops at the first check: a few SFT steps, enough to test the machinery.
QUICK = BootstrapConfig(seed=0, band_low=0.0, band_high=1.0, vocab_size=400, hidden_size=32, layers=1,
                        heads=2, kv_heads=1, intermediate_size=64, batch_size=8, max_steps=10,
                        eval_every=10, eval_tasks=4, eval_samples=1, max_new_tokens=24, register=True)


@pytest.fixture(scope="module")
def grader_pool():
    from grader import Grader

    with Grader(workers=2) as g:
        yield g


def _weights(policy):
    return {k: v.clone() for k, v in policy.model.state_dict().items()}


def test_same_seed_same_weights(mlflow_store, grader_pool):
    runs = []
    for seed in (0, 0, 1):
        with mlflow_store.run("b", "bootstrap") as run:
            policy, _, steps = train_base(replace(QUICK, seed=seed), run, grader_pool, log=lambda m: None)
        runs.append((_weights(policy), policy.tokenizer.get_vocab(), steps))
    (a, vocab_a, _), (b, vocab_b, _), (c, _, _) = runs
    assert vocab_a == vocab_b
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_bootstrap_logs_registers_and_loads(mlflow_store, grader_pool):
    from selfregress.policy import build_prompt, load_policy
    from selfregress.sampling import sample

    uri = bootstrap(QUICK, mlflow_store, grader_pool, log=lambda m: None)
    assert uri == "models:/selfregress-base@base"
    run = mlflow_store.find_runs("tags.`selfregress.kind` = 'bootstrap'")[0]
    assert run.info.status == "FINISHED"
    assert sorted(mlflow_store.metric_history(run.info.run_id, "sft/loss")) == list(range(1, 11))
    assert list(mlflow_store.metric_history(run.info.run_id, "sft/pass_at_1")) == [10]
    # the kept model's pass@1 has its own key: never a lone point on the chains' pass_at_1 chart
    assert list(mlflow_store.metric_history(run.info.run_id, "sft/base_pass_at_1")) == [10]
    assert "pass_at_1" not in run.data.metrics
    assert mlflow_store.model_id(uri) in mlflow_store.checkpoints(run.info.run_id).values()
    policy = load_policy(uri)
    out = sample(policy, [build_prompt(policy.tokenizer, "Print 1.")], n=2, max_new_tokens=8, seed=0)
    assert len(out.texts) == 2


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "selfregress", *args], capture_output=True, text=True,
                          cwd=cwd, env=os.environ.copy(), timeout=300)


@pytest.fixture(scope="module")
def quick_model(tmp_path_factory, grader_pool):
    folder = tmp_path_factory.mktemp("quick")
    from selfregress.tracking import connect

    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/m.db"
    try:
        with connect("q").run("b", "bootstrap") as run:
            policy, _, _ = train_base(QUICK, run, grader_pool, log=lambda m: None)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI") if old is None else os.environ.__setitem__("MLFLOW_TRACKING_URI", old)
    policy.save(folder / "model")
    return str(folder / "model")


def test_evaluate_cli_logs_pass_at_1(mlflow_store, quick_model, tmp_path):
    result = cli("evaluate", "--model", quick_model, "--eval_tasks", "6", "--eval_samples", "2",
                 "--max_new_tokens", "24", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "pass_at_1:" in result.stdout and "pass_at_2:" in result.stdout
    from selfregress.tracking import connect

    run = connect("selfregress").find_runs("tags.`selfregress.kind` = 'evaluate'")[0]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["eval/trials"] == 12.0
    # pass@1 is the share of the 12 samples that passed, and it is the figure the CLI printed
    assert run.data.metrics["pass_at_1"] == run.data.metrics["eval/successes"] / 12
    printed = float(next(line for line in result.stdout.splitlines() if line.startswith("pass_at_1:")).split()[1])
    assert printed == round(run.data.metrics["pass_at_1"], 4)


def test_evaluate_keeps_each_reply_beside_its_program_and_verdict(mlflow_store, quick_model, tmp_path):
    """samples.jsonl on the evaluate run (the sampled-programs artifact), from a model whose
    tokenizer has a chat template (so the prompt is the chat one): one line per sample, task-major,
    the program being what extract_program takes from the reply, and the verdicts adding up to
    the logged successes."""
    import json
    import shutil

    from mlflow.artifacts import download_artifacts

    from selfregress.policy import extract_program
    from selfregress.tasks import resolve_tasks

    chat = tmp_path / "chat"
    shutil.copytree(quick_model, chat)
    config = json.loads((chat / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                               "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    (chat / "tokenizer_config.json").write_text(json.dumps(config))
    from selfregress.policy import build_prompt, load_policy
    assert build_prompt(load_policy(str(chat)).tokenizer, "Print 1.").startswith("<|im_start|>user")
    result = cli("evaluate", "--model", str(chat), "--eval_tasks", "5", "--eval_samples", "3",
                 "--max_new_tokens", "24", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from selfregress.tracking import connect

    run = connect("selfregress").find_runs("tags.`selfregress.kind` = 'evaluate'")[0]
    path = download_artifacts(run_id=run.info.run_id, artifact_path="samples.jsonl", dst_path=str(tmp_path))
    lines = [json.loads(line) for line in open(path, encoding="utf-8")]
    tasks = resolve_tasks("synthetic", "eval", 5)
    assert [(line["task_id"], line["sample"]) for line in lines] == [(t.task_id, i) for t in tasks for i in range(3)]
    assert all(line["program"] == extract_program(line["reply"]) for line in lines)
    assert all(line["outcome"] in ("passed", "wrong_answer", "runtime_error", "syntax_error", "timeout",
                                   "memory_limit", "output_limit") for line in lines)
    assert sum(line["reward"] for line in lines) == run.data.metrics["eval/successes"]
    assert all((line["reward"] == 1.0) == (line["outcome"] == "passed") for line in lines)


def test_evaluate_greedy_is_one_answer_per_task_whatever_the_seed(mlflow_store, tmp_path):
    """temperature 0: the shipped tiny base's greedy pass@1 (the sharpened policy a first RL step
    moves toward), the same under any seed, and the CLI says it was greedy."""
    printed = []
    for seed in ("0", "5"):
        result = cli("evaluate", "--model", "tiny", "--eval_tasks", "16", "--eval_samples", "1",
                     "--temperature", "0", "--seed", seed, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "1 samples each at greedy (16 trials" in result.stderr
        printed.append(next(line for line in result.stdout.splitlines() if line.startswith("pass_at_1:")))
    assert printed[0] == printed[1]
    from selfregress.policy import build_prompt, load_policy
    from selfregress.sampling import sample
    from selfregress.tasks import resolve_tasks

    tasks = resolve_tasks("synthetic", "eval", 16)
    policy = load_policy(SHIPPED_BASE)
    a, b = (sample(policy, [build_prompt(policy.tokenizer, t.prompt, t.starter_code) for t in tasks], n=1,
                   temperature=0.0, max_new_tokens=96, seed=s).texts for s in (0, 5))
    assert a == b                                             # greedy: the seed draws nothing


@pytest.mark.parametrize("args, message", [
    (["bootstrap", "--band_low", "0.4", "--band_high", "0.2"], "band"),
    (["evaluate", "--model", "MODEL", "--temperature", "0", "--eval_samples", "2"], "greedy"),
    (["evaluate", "--model", "/no/such/model"], "does not exist"),
    (["evaluate", "--model", "MODEL", "--tasks", "nosuch:x"], "unknown task source"),
    (["evaluate", "--model", "MODEL", "--tasks", "jsonl:bad.jsonl"], "bad.jsonl:2:"),
    (["evaluate", "--model", "MODEL", "--tasks", "jsonl:missing.jsonl"], "missing.jsonl"),
])
def test_bad_input_is_one_line(args, message, mlflow_store, quick_model, tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"task_id": "a", "prompt": "p", "tests": [{"input": "1", "output": "1"}]}\n{not json\n')
    args = [quick_model if a == "MODEL" else a for a in args]
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0].lower(), result.stderr
    from selfregress.tracking import connect

    assert not connect("selfregress").find_runs("attributes.status = 'RUNNING'")
