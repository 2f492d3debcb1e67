"""The embedded testbed's base model: a locally trained tokenizer, a tiny Qwen2, and SFT.

The default base is not built here but shipped (``src/selfregress/base/tiny``, registered on
first use by ``ensure_base_model``): the same bootstrap gave different weights on different
machines (BLAS kernels in training), so a rebuild is another base. ``bootstrap`` stays, to
rebuild it or to make other bases.

Reads: the synthetic ``pretrain`` pool (disjoint from the RL, eval and test sets), and the
first ``eval_tasks`` of the eval split for the band check.
Writes: a ``bootstrap`` run with ``sft/loss`` per step and ``sft/pass_at_1`` per evaluation,
the model as a LoggedModel, registered as ``selfregress-base`` with the alias ``base``.

SFT stops at the first evaluation whose held-out pass@1 lands in the band [band_low,
band_high], so that RL starts with room both to rise and to collapse.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from selfregress import metric_keys as K
from selfregress.config import as_params, option, require_at_least_one
from selfregress.errors import UserError


@dataclass(frozen=True)
class BootstrapConfig:
    """How the base model is built. Every field is an MLproject parameter of `bootstrap`."""
    seed: int = option(0, "seed for the tokenizer corpus order, the weights and the batches")
    band_low: float = option(0.10, "lower bound of the target held-out pass@1 band")
    band_high: float = option(0.35, "upper bound of the target held-out pass@1 band")
    vocab_size: int = option(1024, "byte-level BPE vocabulary size")
    hidden_size: int = option(128, "Qwen2 hidden size")
    layers: int = option(4, "Qwen2 decoder layers")
    heads: int = option(4, "attention heads")
    kv_heads: int = option(2, "key/value heads (grouped-query attention)")
    intermediate_size: int = option(384, "MLP width")
    batch_size: int = option(32, "SFT sequences per step")
    lr: float = option(2e-3, "AdamW learning rate (after a 20-step warm-up)")
    max_steps: int = option(2000, "give up if the band is not reached after this many steps")
    eval_every: int = option(50, "SFT steps between held-out evaluations")
    eval_tasks: int = option(128, "held-out eval-split tasks used for the band check")
    eval_samples: int = option(2, "samples per task in the band check")
    temperature: float = option(1.0, "sampling temperature of the band check (RL samples at this)")
    max_new_tokens: int = option(96, "token limit of sampled programs")
    register: bool = option(True, "register the result as selfregress-base@base")

    def validate(self) -> None:
        if not 0.0 <= self.band_low < self.band_high <= 1.0:
            raise UserError(f"the band must satisfy 0 <= band_low < band_high <= 1, got "
                            f"[{self.band_low}, {self.band_high}]: swap or fix the bounds")
        require_at_least_one(self, ("batch_size", "max_steps", "eval_every", "eval_tasks", "eval_samples",
                                    "vocab_size", "hidden_size", "layers", "heads", "kv_heads", "max_new_tokens"))
        if self.hidden_size % self.heads or self.heads % self.kv_heads:
            raise UserError("hidden_size must divide by heads, and heads by kv_heads")
        if self.seed < 0:
            raise UserError(f"'seed' must be >= 0, got {self.seed}")


def build_model(config: BootstrapConfig, tokenizer):
    import torch

    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(config.seed)
    return Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size,
        num_hidden_layers=config.layers, num_attention_heads=config.heads,
        num_key_value_heads=config.kv_heads, intermediate_size=config.intermediate_size,
        max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None))


def sft_examples(tokenizer, tasks) -> list[tuple[list[int], int]]:
    """(token ids of prompt + solution + EOS, prompt length) per reference solution."""
    from selfregress.policy import build_prompt

    examples = []
    for task in tasks:
        prompt = build_prompt(tokenizer, task.prompt, task.starter_code)
        prompt_ids = tokenizer(prompt)["input_ids"]
        for solution in task.solutions:
            ids = prompt_ids + tokenizer(solution)["input_ids"] + [tokenizer.eos_token_id]
            examples.append((ids, len(prompt_ids)))
    return examples


def collate(examples, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) and labels (B, T): -100 on the prompt and padding."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, (seq, prompt_len) in enumerate(examples):
        ids[row, :len(seq)] = torch.tensor(seq)
        labels[row, prompt_len:len(seq)] = torch.tensor(seq[prompt_len:])
    return ids, labels


def train_base(config: BootstrapConfig, run, grader, log=print):
    """SFT until the band; returns (policy, pass_at_1, steps). ``run`` is a tracking.Run."""
    import torch

    from selfregress.evaluation import evaluate
    from selfregress.policy import Policy
    from selfregress.tasks import synthetic_splits
    from selfregress.tokenizer import train_tokenizer

    torch.manual_seed(config.seed)
    # The band is checked on the held-out eval split, where RL will be measured: the pretrain
    # pool repeats each problem in several phrasings, so no slice of it is held out.
    splits = synthetic_splits(seed=config.seed)
    held_out = splits.eval[:config.eval_tasks]
    train_tasks = splits.pretrain
    tokenizer = train_tokenizer((t.prompt + "\n" + s for t in train_tasks for s in t.solutions),
                                vocab_size=config.vocab_size)
    model = build_model(config, tokenizer)
    policy = Policy(model=model, tokenizer=tokenizer, device=torch.device("cpu"))
    examples = sft_examples(tokenizer, train_tasks)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"bootstrap: {n_params / 1e6:.2f} M parameters, vocabulary {len(tokenizer)}, "
        f"{len(examples)} SFT examples, band [{config.band_low}, {config.band_high}]")
    run.log_params({"n_parameters": n_params, "sft_examples": len(examples)})

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95),
                                  weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 20))
    batches = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(1, config.max_steps + 1):
        model.train()
        index = torch.randint(len(examples), (config.batch_size,), generator=batches)
        ids, labels = collate([examples[i] for i in index.tolist()], tokenizer.pad_token_id)
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % config.eval_every:
            continue
        model.eval()
        result = evaluate(policy, held_out, grader, samples=config.eval_samples,
                          temperature=config.temperature, max_new_tokens=config.max_new_tokens,
                          seed=config.seed)
        run.log_series(K.SFT_LOSS, losses[-config.eval_every:], start_step=step - config.eval_every + 1)
        run.log_metrics({K.SFT_PASS_AT_1: result.pass_at_1}, step=step)
        log(f"bootstrap: step {step}  loss {sum(losses[-config.eval_every:]) / config.eval_every:.3f}  "
            f"pass@1 {result.pass_at_1:.3f}  ({time.perf_counter() - started:.0f}s)")
        if config.band_low <= result.pass_at_1 <= config.band_high:
            return policy, result.pass_at_1, step
        if result.pass_at_1 > config.band_high:
            raise UserError(f"SFT overshot the band: pass@1 {result.pass_at_1:.3f} > band_high "
                            f"{config.band_high} at step {step}; lower eval_every or lr")
    raise UserError(f"SFT did not reach pass@1 >= {config.band_low} in {config.max_steps} steps; "
                    "raise max_steps or lr, or lower band_low")


def bootstrap(config: BootstrapConfig, store, grader, log=print, attach_run_id: str | None = None) -> str:
    """Build, log and (optionally) register the base model. Returns its ``models:/`` URI."""
    from selfregress.tracking import BASE_ALIAS, BASE_MODEL_NAME

    with store.run("bootstrap", "bootstrap", params=as_params(config),
                   attach_run_id=attach_run_id) as run:
        policy, pass_at_1, steps = train_base(config, run, grader, log)
        with tempfile.TemporaryDirectory() as folder:
            policy.save(folder)
            model_id = run.log_checkpoint(folder, name="selfregress-base", step=steps,
                                          tags={"pass_at_1": f"{pass_at_1:.4f}", "seed": config.seed})
        run.log_metrics({K.SFT_BASE_PASS_AT_1: pass_at_1}, step=steps, model_id=model_id)
        if not config.register:
            return f"models:/{model_id}"
        version = store.register(model_id, BASE_MODEL_NAME, BASE_ALIAS,
                                 tags={"pass_at_1": f"{pass_at_1:.4f}", "seed": config.seed,
                                       "source_run_id": run.run_id})
        log(f"bootstrap: registered {BASE_MODEL_NAME} version {version} as @{BASE_ALIAS} "
            f"(pass@1 {pass_at_1:.3f} on eval[:{config.eval_tasks}] x {config.eval_samples}, "
            f"the first in the band, after {steps} steps). A rebuild differs by machine: these are "
            "not the shipped base's weights, and chains started from @base now start from them")
        return f"models:/{BASE_MODEL_NAME}@{BASE_ALIAS}"


def start_model(store, model: str, log=print) -> str:
    """What a ``model`` parameter names: ``base`` (the registered base, ``ensure_base_model``), a
    shipped base by name (``tiny``, ``small``: ``models:/selfregress-base@small``, registered on first
    use), an imported base's alias (``smollm2-135m``: ``models:/selfregress-base@smollm2-135m``), or
    itself (a folder or a models:/ URI)."""
    from selfregress.import_model import resolve_alias
    from selfregress.tracking import BASE_MODEL_NAME

    if model == "base":
        return ensure_base_model(store, log)
    if model in SHIPPED_BASES:
        uri = store.registered_uri(BASE_MODEL_NAME, model)
        if uri is None:
            return register_shipped_base(store, log, name=model, alias=model)
        restore_shipped_weights(store, model, log)
        return uri
    return resolve_alias(model)


def ensure_base_model(store, log=print) -> str:
    """The registered base model; on first use, the shipped one (``shipped_base``) is registered.
    Nothing is trained on the default path: every machine starts from the same weights."""
    from selfregress.tracking import BASE_ALIAS, BASE_MODEL_NAME

    uri = store.registered_uri(BASE_MODEL_NAME, BASE_ALIAS)
    if uri is None:
        return register_shipped_base(store, log)
    restore_shipped_weights(store, BASE_ALIAS, log)
    return uri


def restore_shipped_weights(store, alias: str, log=print) -> None:
    """A store packed without its shipped bases' weights (``studies/archive.py --bases
    unshipped``) and unpacked elsewhere gets them back from the package on first use: the registered
    version's files are written again from the shipped folder whose digest it records. A
    registered base that did not ship, or whose files are there, is left alone."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from selfregress.tracking import BASE_MODEL_NAME

    version = store.client.get_model_version_by_alias(BASE_MODEL_NAME, alias)
    if "shipped" not in version.tags or not version.source.startswith("models:/m-"):
        return
    repository = get_artifact_repository(
        store.client.get_logged_model(version.source.removeprefix("models:/")).artifact_location)
    if repository.list_artifacts():
        return
    digest = version.tags.get("weights_digest")
    names = [name for name in SHIPPED_BASES
             if json.loads((_folder(name) / "SHIPPED.json").read_text())["weights_digest"] == digest]
    if not names:
        raise UserError(f"{BASE_MODEL_NAME}@{alias} (version {version.version}) has no files, and no base that "
                        f"ships with this code has its weights sha256 {str(digest)[:12]}...: unpack the store "
                        f"with its bases (studies/archive.py --bases all)")
    folder, _ = shipped_base(names[0])                     # its files checked against that digest
    repository.log_artifacts(str(folder))
    log(f"restored the files of {BASE_MODEL_NAME}@{alias} (version {version.version}) from the shipped "
        f"base in {folder}, weights sha256 {digest[:12]}...")


SHIPPED_ROOT = Path(__file__).resolve().parent / "base"
SHIPPED_BASE = SHIPPED_ROOT / "tiny"           # the default: what @base starts as
SHIPPED_BASES = ("tiny", "small")              # -P model=small starts from the 4.94 M base


def shipped_base(name: str = "tiny") -> tuple[Path, dict]:
    """(folder, its SHIPPED.json) of a base that ships with the project, its weights checked
    against the digest recorded there (a damaged copy is refused, never trained on)."""
    from selfregress.base_identity import weights_digest

    folder = _folder(name)
    record = json.loads((folder / "SHIPPED.json").read_text())
    digest = weights_digest(folder)
    if digest != record["weights_digest"]:
        raise UserError(f"the shipped base in {folder} has weights sha256 {digest[:12]}..., not the "
                        f"recorded {record['weights_digest'][:12]}...: restore it with git checkout -- {folder}")
    return folder, record


def _folder(name: str) -> Path:
    return SHIPPED_BASE if name == "tiny" else SHIPPED_ROOT / name


def register_shipped_base(store, log=print, name: str = "tiny", alias: str = "") -> str:
    """Log a shipped base as a LoggedModel (a ``bootstrap`` run named ``shipped-base``, or
    ``shipped-<name>``) and register it as ``selfregress-base@<alias>`` (default ``@base``).
    Returns the alias URI."""
    from selfregress.tracking import BASE_ALIAS, BASE_MODEL_NAME

    alias = alias or BASE_ALIAS
    folder, record = shipped_base(name)
    tags = {"shipped": record["name"], "weights_digest": record["weights_digest"]}
    run_name = "shipped-base" if alias == BASE_ALIAS else f"shipped-{name}"
    with store.run(run_name, "bootstrap", tags={**tags, K.NOTE: (
            f"A base model that ships with selfregress ({record['name']}: {record['parameters']}), "
            f"registered as {BASE_MODEL_NAME}@{alias} on first use; built by {record['built_by']}.")}) as run:
        model_id = run.log_checkpoint(str(folder), name=BASE_MODEL_NAME, step=0, tags=tags)
        version = store.register(model_id, BASE_MODEL_NAME, alias, tags={**tags, "source_run_id": run.run_id})
    log(f"registered the shipped base ({record['name']}, weights sha256 {record['weights_digest'][:12]}...) "
        f"as {BASE_MODEL_NAME} version {version}, alias @{alias}")
    return f"models:/{BASE_MODEL_NAME}@{alias}"
