"""A chain's settings and their hashes: torch-free, for the chain and for every reader.

``ChainConfig`` is the one place a chain's parameters and their defaults live (MLproject's
``main`` entry point mirrors it; tests/test_mlproject.py checks they agree). ``code_version``
and ``config_hash`` decide whether a sweep may reuse a finished chain.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from selfregress import metric_keys as K
from selfregress.conditions import CONDITIONS, KL_ESTIMATOR_NAMES
from selfregress.config import as_params, option, parse, require_at_least_one
from selfregress.errors import UserError

DEVICES = ("auto", "cpu", "cuda")   # device: auto is cuda when torch sees one, else cpu
DTYPES = ("fp32", "bf16")           # dtype of the forward passes (autocast); weights stay fp32
RETENTIONS = ("all", "decisions")   # retention: what stays stored (retention.py)


@dataclass(frozen=True)
class ChainConfig:
    """One chain of the protocol. Every field is an MLproject parameter of `main`."""
    condition: str = option("naive", "update + controller", tuple(CONDITIONS))
    seed: int = option(0, "chain seed: prompts, sampling and evaluation draws")
    model: str = option("base", "start model: 'base' (registry), 'tiny'/'small' (shipped), a folder, a hub id or a models:/ URI")
    tasks: str = option("synthetic", "RL/eval task source: 'synthetic' (its rl and eval splits)")
    rl_tasks: int = option(256, "size of the fixed RL task set (the first N of the source's RL split)")
    campaign_tasks: int = option(0, "RL tasks per campaign: 0 = the whole RL set in every campaign; N = each "
                                 "campaign trains on its own N of the rl_tasks, drawn without replacement from "
                                 "(seed, campaign), the same for every condition")
    campaigns: int = option(10, "campaigns in the chain")
    steps: int = option(20, "policy-gradient steps per campaign (the budget)")
    batch_size: int = option(16, "prompts per step")
    group_size: int = option(4, "samples per prompt (every condition draws the same number)")
    lr: float = option(7e-4, "AdamW learning rate at the start of every campaign (the collapse regime)")
    temperature: float = option(1.0, "sampling temperature (training and evaluation)")
    top_p: float = option(1.0, "nucleus sampling threshold")
    max_new_tokens: int = option(96, "token limit of a sampled program")
    eval_tasks: int = option(128, "held-out tasks evaluated after every step")
    eval_samples: int = option(2, "samples per held-out task")
    baseline: str = option("none", "REINFORCE baseline (naive is the paper's A0: none)", ("none", "mean", "ema"))
    kl_beta: float = option(0.1, "beta of KL(pi || pi_start) (condition kl), on the sequence KL summed over "
                                 "tokens and divided by batch_size x group_size x max_new_tokens like the "
                                 "policy-gradient loss: a nat weighs the same at any completion length")
    ewc_lambda: float = option(100.0, "lambda of the EWC term (condition ewc)")
    fisher_samples: int = option(32, "sampled completions used to estimate the EWC Fisher")
    checkpoints: str = option("all", "which steps log a checkpoint", ("all", "peaks", "none"))
    retention: str = option("all", "which checkpoints' weights stay stored once a campaign and its report "
                            "evaluation are over: all, or decisions (its start, selection peak, end and the "
                            "next start: ES's peak, CARE's incumbent; the others' weights are deleted, their "
                            "LoggedModels tagged selfregress.pruned)", RETENTIONS)
    es_slack: int = option(3, "ES: next budget = min(steps, max(1, peak_step + es_slack))")
    es_min_delta: float = option(0.0, "ES: a new peak must beat the old by more than this")
    es_patience: int = option(0, "ES: stop after this many steps without a new peak (0 = never)")
    care_gate: float = option(0.5, "CARE: transfer iff P(p_candidate > p_incumbent) >= care_gate")
    care_regress: float = option(0.8, "CARE: regression iff P(p_end < p_start) >= care_regress")
    care_lr_decay: float = option(0.5, "CARE: lr multiplier after a regression")
    care_forget: float = option(0.5, "CARE: scale of the incumbent posterior toward the prior after a regression")
    resume: str = option("false", "'true' resumes the latest unfinished chain of this condition and seed, or a chain_id")
    workers: int = option(2, "grader processes")
    # 384 x 2: the sd of one report pass@1 over fresh sampling seeds and resampled tasks is 0.74
    # points at the shipped base on the report split (p = 0.04) and 1.44 with the selection
    # split's task mix (p = 0.15): benchmarks/report_split_noise.py, README "Splits".
    report_tasks: int = option(384, "report split: held-out tasks disjoint from the eval (selection) "
                               "ones, evaluated at each campaign's start, peak and end; no decision reads "
                               "it (0: none, as in tune's trials)")
    report_samples: int = option(2, "samples per report-split task (and per RL task, for rlset/*)")
    kl_estimator: str = option("k1", "KL estimator of condition kl: k1 (in the reward: KL(pi || pi_start) of "
                               "whole completions, exact gradient), k2 (loss: per-token KL(pi || pi_start), "
                               "contexts held fixed), k3 (loss: the REVERSE KL(pi_start || pi), GRPO's and "
                               "TRL's)", KL_ESTIMATOR_NAMES)
    lora_rank: int = option(0, "LoRA rank: train adapters of this rank on the frozen base, and checkpoint "
                            "only them (0: full fine-tuning)")
    lora_alpha: float = option(16.0, "LoRA alpha: the adapter's update is scaled by lora_alpha / lora_rank")
    device: str = option("auto", "where the model runs: auto (cuda when available), cpu or cuda", DEVICES)
    dtype: str = option("fp32", "forward passes: fp32, or bf16 autocast (sampling, log-probs; the weights "
                        "and AdamW stay fp32)", DTYPES)
    micro_batch: int = option(0, "rows per forward/backward pass of a step's update, gradients accumulated "
                              "(the same gradient up to rounding; kl pays one extra no-grad pass): set it "
                              "when a real model's logits and activations do not fit; 0 = all rows at once")
    grad_checkpointing: bool = option(False, "recompute each decoder layer's activations in the backward "
                                      "instead of keeping them (less memory, one more forward's time)")

    def validate(self) -> None:
        require_at_least_one(self, ("rl_tasks", "campaigns", "steps", "batch_size", "group_size", "max_new_tokens",
                                    "eval_tasks", "eval_samples", "workers", "fisher_samples"))
        if self.report_tasks < 0 or self.report_samples < 1:
            raise UserError(f"'report_tasks' must be >= 0 and 'report_samples' >= 1, got {self.report_tasks} "
                            f"and {self.report_samples}")
        if self.seed < 0:
            raise UserError(f"'seed' must be >= 0, got {self.seed}")
        if self.lr <= 0 or self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise UserError("'lr' and 'temperature' must be > 0, and 'top_p' in (0, 1]")
        if CONDITIONS[self.condition].update == "grpo" and self.group_size < 2:
            raise UserError(f"condition {self.condition} needs group_size >= 2 (GRPO normalises "
                            f"within a group), got {self.group_size}")
        if self.kl_estimator not in KL_ESTIMATOR_NAMES:
            raise UserError(f"'kl_estimator' must be one of {', '.join(KL_ESTIMATOR_NAMES)}, got {self.kl_estimator!r}")
        if self.kl_beta < 0 or self.ewc_lambda < 0:
            raise UserError("'kl_beta' and 'ewc_lambda' must be >= 0")
        if self.es_slack < 0 or self.es_patience < 0 or self.es_min_delta < 0:
            raise UserError("'es_slack', 'es_patience' and 'es_min_delta' must be >= 0")
        if not 0 <= self.campaign_tasks <= self.rl_tasks:
            raise UserError(f"'campaign_tasks' must be in [0, rl_tasks={self.rl_tasks}] (0: the whole RL set "
                            f"in every campaign), got {self.campaign_tasks}")
        if self.micro_batch < 0:
            raise UserError(f"'micro_batch' must be >= 0 (0: the whole batch at once), got {self.micro_batch}")
        if self.lora_rank < 0 or self.lora_alpha <= 0:
            raise UserError(f"'lora_rank' must be >= 0 (0: full fine-tuning) and 'lora_alpha' > 0, got "
                            f"{self.lora_rank} and {self.lora_alpha}")
        for name in ("care_gate", "care_regress", "care_lr_decay", "care_forget"):
            if not 0 < getattr(self, name) < 1 and not (name == "care_lr_decay" and getattr(self, name) == 1):
                raise UserError(f"'{name}' must be in (0, 1), got {getattr(self, name)}")

    def policy_options(self) -> dict[str, str | None]:
        """``load_policy``'s device and autocast for this chain (None: its default)."""
        return {"device": None if self.device == "auto" else self.device,
                "autocast": None if self.dtype == "fp32" else self.dtype}

    @property
    def update(self) -> str:
        """The condition's update rule (reinforce | kl | ewc | grpo)."""
        return CONDITIONS[self.condition].update

    @property
    def controller(self) -> str:
        """The name of the condition's controller (last | es | care)."""
        return CONDITIONS[self.condition].controller


# Modules that never change a chain's numbers: entry points, display, and the readers.
_NOT_IN_CODE_VERSION = {"__main__.py", "cli.py", "progress.py", "sweep.py", "report.py", "audit.py",
                        "promote.py", "tune.py", "table.py", "retention.py"}
# Settings that never change a chain's numbers (retention deletes weights after every decision
# and report figure that reads them is made).
NOT_IN_CONFIG_HASH = ("resume", "workers", "retention")
# Settings added after chains were recorded: hashed only away from their default, so that the
# hash of every chain logged before them (and of a chain that leaves them alone) is unchanged.
HASHED_WHEN_SET = {"lora_rank": 0, "lora_alpha": 16.0, "device": "auto", "dtype": "fp32", "micro_batch": 0,
                   "grad_checkpointing": False, "campaign_tasks": 0}


@functools.cache
def code_version() -> str:
    """A hash of the source that decides a chain's numbers (the selfregress and grader packages,
    without the entry points and readers): a sweep reuses a finished chain only if it matches."""
    import grader

    digest = hashlib.sha256()
    for root in (Path(__file__).parent, Path(grader.__file__).parent):
        for path in sorted(root.rglob("*.py")):
            if path.name not in _NOT_IN_CODE_VERSION:
                digest.update(f"{root.name}/{path.relative_to(root)}".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def config_hash(config: ChainConfig, *, without: tuple[str, ...] = (), base_digest: str = "",
                splits: dict[str, str] | None = None) -> str:
    """A hash of the resolved settings that decide a chain's numbers (``without``: more to leave out),
    of the base's weights (``base_digest``, base_identity.py: ``model=base`` names a moving alias),
    and of the task splits' contents (``splits``: ``records.split_digests``)."""
    values = {k: v for k, v in as_params(config).items() if k not in NOT_IN_CONFIG_HASH + without
              and not _at_default_or_unused(config, k)}
    if base_digest:
        values["base_digest"] = base_digest
    if splits:
        values["splits"] = dict(splits)
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def _at_default_or_unused(config: ChainConfig, key: str) -> bool:
    """A ``HASHED_WHEN_SET`` setting at its default, or lora_alpha under full fine-tuning."""
    if key == "lora_alpha" and config.lora_rank == 0:
        return True
    return key in HASHED_WHEN_SET and getattr(config, key) == HASHED_WHEN_SET[key]


def chain_tags(config: ChainConfig, chain_id: str, model: str, sweep_id: str = "",
               base_digest: str = "", splits: dict[str, str] | None = None) -> dict[str, str]:
    """The tags of a chain run: what it is, and the hashes a sweep finds a finished chain by."""
    tags = {K.CONDITION: config.condition, K.SEED: str(config.seed), K.CHAIN_ID: chain_id, K.MODEL: model,
            K.CONFIG_HASH: config_hash(config, base_digest=base_digest, splits=splits), K.CODE_VERSION: code_version()}
    if sweep_id:
        tags[K.SWEEP_ID] = sweep_id
    return tags


def logged_config(params: dict[str, str]) -> ChainConfig:
    """A chain run's ChainConfig, from its logged params (other params, e.g. a sweep's, ignored)."""
    return parse(ChainConfig, {k: v for k, v in params.items() if k in ChainConfig.__dataclass_fields__})
