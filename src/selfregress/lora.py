"""LoRA adapters (peft): train a few MB on top of a frozen base, and save only those.

LoRA (Hu et al. 2021, arXiv:2106.09685) replaces each adapted weight W (d_out, d_in) by
W + (alpha / r) * B @ A, with A (r, d_in) random and B (d_out, r) zero at the start, so
that the adapted model starts *exactly* at the base. Only A and B train.

- ``attach_lora`` wraps a loaded model; the LoRA layers are injected into the model's own
  modules, so ``adapted.get_base_model()`` (a plain transformers model, with its own
  ``forward`` signature: KV cache, ``logits_to_keep``) runs the adapted model too. That
  inner model is what ``Policy.model`` should hold: the sampler and the loss then see an
  ordinary causal LM (``policy_model``).
- ``save_adapter`` / ``load_adapter`` write and read adapter-only folders
  (``adapter_config.json`` + ``adapter_model.safetensors``) plus ``selfregress_base.json``,
  which names the base they belong to. ``policy.load_policy`` recognises such a folder and
  loads base + adapter (``Policy.adapter``); ``Policy.save`` writes one under LoRA.
- ``base_model_off`` is the reference model of the KL and EWC terms at no memory cost:
  inside it the adapters are switched off, so the same weights compute the base's outputs.
  ``start_adapter`` keeps a frozen copy of the adapter (a campaign's start) for a reference
  that is not the base.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Iterator

import torch

from selfregress.errors import UserError

ADAPTER_NAME = "default"        # peft's name for the trained adapter
START_ADAPTER = "start"         # a frozen copy: the campaign's start, for KL/EWC references
BASE_FILE = "selfregress_base.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def attach_lora(model, rank: int, alpha: float, dropout: float = 0.0,
                target_modules: str | list[str] = "auto"):
    """A peft model over ``model`` in which only the LoRA matrices require grad.

    target_modules: "auto" is every linear layer of the decoder blocks (peft's "all-linear":
    q, k, v, o and the MLP's projections; never the output head), or a list of module names.
    The returned model computes exactly what ``model`` did until B moves away from 0.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UserError("lora_rank > 0 needs peft: pip install -c constraints.txt peft") from None
    if rank < 1:
        raise UserError(f"'lora_rank' must be >= 1 to attach adapters, got {rank}")
    if alpha <= 0 or not 0.0 <= dropout < 1.0:
        raise UserError(f"need lora_alpha > 0 and 0 <= lora_dropout < 1, got {alpha}, {dropout}")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        task_type="CAUSAL_LM",
                        target_modules="all-linear" if target_modules == "auto" else target_modules)
    was_training = model.training
    with _quiet_peft():
        adapted = get_peft_model(model, config)
    adapted.train(was_training)     # get_peft_model keeps the mode; say so, eval stays eval
    return adapted


def policy_model(adapted):
    """The plain transformers model inside ``adapted``, adapters injected: for ``Policy.model``."""
    return adapted.get_base_model()


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    """What the optimizer should get: the adapters under LoRA, everything under full fine-tuning."""
    return [p for p in model.parameters() if p.requires_grad]


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def is_fresh(adapted) -> bool:
    """Whether the trained adapter is still at its start (every B = 0): it then adds nothing."""
    return all(not p.any() for name, p in adapted.named_parameters()
               if f".lora_B.{ADAPTER_NAME}." in name)


# ---- references -------------------------------------------------------------------------------
@contextlib.contextmanager
def base_model_off(adapted) -> Iterator[None]:
    """Inside: the adapters are off and the (inner) model computes the base's outputs exactly.

    Works on the peft model and on ``policy_model(adapted)`` alike, since both share the
    injected layers. Use it for the KL/EWC reference instead of a second copy of the model.
    """
    with adapted.disable_adapter():
        yield


def snapshot_start(adapted) -> None:
    """Copy the trained adapter's current weights into a frozen ``start`` adapter (a few MB).

    Call it at a campaign start when the KL reference is the campaign's start model rather
    than the base: ``with start_adapter(adapted):`` then computes that start model.
    """
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    if START_ADAPTER not in adapted.peft_config:
        adapted.add_adapter(START_ADAPTER, adapted.peft_config[ADAPTER_NAME])
    state = get_peft_model_state_dict(adapted, adapter_name=ADAPTER_NAME)
    set_peft_model_state_dict(adapted, state, adapter_name=START_ADAPTER)
    _freeze_all_but(adapted, ADAPTER_NAME)


@contextlib.contextmanager
def start_adapter(adapted) -> Iterator[None]:
    """Inside: the frozen ``start`` adapter is active instead of the trained one."""
    if START_ADAPTER not in adapted.peft_config:
        raise RuntimeError("no start adapter: call snapshot_start(adapted) at the campaign start")
    adapted.set_adapter(START_ADAPTER)
    try:
        yield
    finally:
        adapted.set_adapter(ADAPTER_NAME)
        _freeze_all_but(adapted, ADAPTER_NAME)


def _freeze_all_but(adapted, name: str) -> None:
    """set_adapter makes the active adapter trainable; only ``name``'s matrices keep grad."""
    for param_name, param in adapted.named_parameters():
        if "lora_" in param_name:
            param.requires_grad_(f".{name}." in param_name)


# ---- checkpoints ------------------------------------------------------------------------------
def save_adapter(adapted, folder: str | Path, base_ref: str, tokenizer=None) -> int:
    """Write the trained adapter only (and the base it belongs to); returns the bytes written.

    ``base_ref`` should be immutable (``models:/<model id>`` or a folder with its sha256),
    never a moving alias. The tokenizer is saved too when given (it is the base's).
    """
    folder = Path(folder)
    adapted.save_pretrained(str(folder), selected_adapters=[ADAPTER_NAME])
    (folder / "README.md").unlink(missing_ok=True)   # peft's blank model card: 5 KB per checkpoint
    (folder / BASE_FILE).write_text(json.dumps({"base": base_ref}) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def is_adapter_folder(folder: str | Path) -> bool:
    return (Path(folder) / "adapter_config.json").is_file()


def adapter_base(folder: str | Path) -> str:
    """The base ref recorded by ``save_adapter``."""
    path = Path(folder) / BASE_FILE
    if not path.is_file():
        raise UserError(f"{folder} is a LoRA adapter without {BASE_FILE}: pass its base model too")
    return json.loads(path.read_text())["base"]


def load_adapter(base_model, folder: str | Path, trainable: bool = False):
    """``base_model`` (freshly loaded, not adapted yet) with the adapter in ``folder`` on it."""
    from peft import PeftModel

    if not is_adapter_folder(folder):
        raise UserError(f"{folder} is not a LoRA adapter folder (no adapter_config.json)")
    with _quiet_peft():
        adapted = PeftModel.from_pretrained(base_model, str(folder), is_trainable=trainable)
    return adapted.train(base_model.training)


@contextlib.contextmanager
def _quiet_peft():
    """peft reads ``model.is_gradient_checkpointing``, which transformers 5 deprecates with a
    FutureWarning on every chain's console; the warning is about peft's code, not the user's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def save_merged(adapted, tokenizer, out: str | Path) -> Path:
    """An ordinary ``save_pretrained`` folder at ``out``: the adapter folded into its base
    (W + alpha / r * B @ A), with the base's tokenizer. For serving (``promote``'s champion),
    which must load without peft and without the store its base lives in. Equal to base +
    adapter up to float rounding; evaluations load the adapter unmerged. ``adapted`` is spent."""
    merged = adapted.merge_and_unload()
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return Path(out)
