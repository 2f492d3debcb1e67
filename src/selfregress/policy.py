"""The policy: any Hugging Face causal LM with its tokenizer, its prompts and its programs.

- ``load_policy`` reads a local ``save_pretrained`` folder, a hub id, or an MLflow
  ``models:/...`` URI, onto CUDA when there is one and the CPU otherwise.
- ``build_prompt`` uses the tokenizer's chat template when it has one, and otherwise
  ``PLAIN_TEMPLATE``, the exact text the embedded base model is fine-tuned on.
- ``extract_program`` pulls the program out of a completion: fenced code or plain code.
- The policy owns the model; sampling (``selfregress.sampling``: ``sample``, ``Samples``) and
  the log-probs of the loss (``selfregress.forcing``: ``completion_logprobs``) use it, and
  import this module, not the other way round.
"""

from __future__ import annotations

import contextlib
import re
import socket
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch

from selfregress.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


# The base model's SFT prompt. Changing it silently detunes every saved base model.
PLAIN_TEMPLATE = "# Problem\n{statement}\n# Solution\n"

CHAT_INSTRUCTION = ("Solve the following programming problem in Python. {io} "
                    "Answer with the complete program in a single ```python code block.")
STDIO = "The program reads from standard input and writes to standard output."
STARTER = "Complete the starter code below; it is called with the test inputs."

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class PolicyError(UserError, ValueError):
    """A model reference that cannot be loaded; the message is one line for the user."""


@dataclass
class Policy:
    """A loaded causal LM, its tokenizer and the device it sits on.

    Under LoRA (``lora.py``) ``model`` is the transformers model with the adapters injected,
    ``adapter`` the peft model around it, and ``base_ref`` the immutable base it belongs to.
    ``autocast_dtype`` (bf16 or None) is the dtype of its forward passes: ``autocast()``.
    """
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    adapter: Any = None
    base_ref: str = ""
    autocast_dtype: torch.dtype | None = None

    def save(self, path: str | Path) -> None:
        """A folder that ``load_policy`` reads: ``save_pretrained`` of model and tokenizer, or under
        LoRA the adapter alone (``lora.save_adapter``: its base is named, not copied)."""
        if self.adapter is not None:
            from selfregress import lora

            lora.save_adapter(self.adapter, path, self.base_ref)
            return
        with _quiet_transformers():
            self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Around forward passes (sampling, log-probs): bf16 autocast, or nothing under fp32."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def load_policy(ref: str | Path, *, device: str | None = None, dtype: str | None = None,
                autocast: str | None = None, trainable: bool = False) -> Policy:
    """Load a local folder, a hub id or a ``models:/...`` URI; raise ``PolicyError`` if it cannot.

    device: None picks "cuda" when available, else "cpu". dtype (of the weights): None or
    "float32" (the default), "bfloat16"/"bf16", "float16"/"fp16", or "auto" (bfloat16 on a CUDA
    device that supports it, else float32). autocast: None, or "bf16" for ``Policy.autocast``.
    The model comes back in eval mode: dropout stays off for sampling and for the loss alike,
    so their log-probs agree.

    A LoRA adapter folder (``lora.save_adapter``) loads as its recorded base + the adapter, not
    merged (the same numbers as the model that wrote it); ``trainable``: the adapter trains on.
    """
    ref = str(ref)
    target = torch.device(resolve_device(device))
    torch_dtype = _resolve_dtype(dtype, target)
    if ref.startswith("models:/"):
        from selfregress.tracking import download_model  # lazily: mlflow is heavy and optional here

        try:
            folder = download_model(ref)
        except UserError as e:
            raise PolicyError(str(e)) from None
    else:
        folder = ref
    path = Path(folder).expanduser()
    if (path / "MLmodel").is_file() and not (path / "config.json").exists():  # serving.py's pyfunc
        path = next(path.glob("artifacts/*/config.json"), path / "config.json").parent
    if (path / "adapter_config.json").is_file():
        return _adapter_policy(path, device, dtype, autocast, trainable)
    if path.exists():
        if not (path / "config.json").is_file():
            raise PolicyError(f"{ref} is not a Hugging Face model folder (no config.json in {path})")
        model, tokenizer = _from_pretrained(str(path), torch_dtype, ref, "the local folder")
    elif not _looks_like_hub_id(ref):
        raise PolicyError(f"model path {ref} does not exist: pass a save_pretrained folder, "
                          "a hub id or a models:/ URI")
    else:
        model, tokenizer = _from_hub(ref, torch_dtype)
    return Policy(model=model.to(target).eval(), tokenizer=tokenizer, device=target,
                  autocast_dtype=_DTYPES[autocast] if autocast else None)


def _adapter_policy(folder: Path, device, dtype, autocast, trainable: bool) -> Policy:
    """Base (as ``selfregress_base.json`` names it) + the adapter in ``folder``."""
    from selfregress import lora

    base_ref = lora.adapter_base(folder)
    base = load_policy(base_ref, device=device, dtype=dtype, autocast=autocast)
    adapted = lora.load_adapter(base.model, folder, trainable=trainable)
    return Policy(model=lora.policy_model(adapted), tokenizer=base.tokenizer, device=base.device,
                  adapter=adapted, base_ref=base_ref, autocast_dtype=base.autocast_dtype)


def _from_pretrained(source: str, torch_dtype: torch.dtype, ref: str, where: str, **kwargs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except Exception as e:  # format/network errors: one line, no traceback wall
        raise PolicyError(f"cannot load model {ref} from {where}: {_first_line(e)}") from None
    return model, tokenizer


def _from_hub(ref: str, torch_dtype: torch.dtype):
    """The local hub cache first; the network only when the hub answers at all.

    Offline, huggingface_hub retries for about a minute before it gives up, and most refs
    that land here are mistyped local paths: say so at once instead.
    """
    with contextlib.suppress(PolicyError):
        return _from_pretrained(ref, torch_dtype, ref, "the hub cache", local_files_only=True)
    if not _hub_reachable():
        raise PolicyError(f"model path {ref} does not exist, and as a hub id it is not cached and "
                          "the Hugging Face hub is unreachable: pass a save_pretrained folder or a "
                          "models:/ URI")
    return _from_pretrained(ref, torch_dtype, ref, "the Hugging Face hub")


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub endpoint (HF_ENDPOINT) accepts a connection; False when HF_HUB_OFFLINE."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def resolve_device(device: str | None) -> str:
    """'cuda' or 'cpu' for None (auto); a device torch has, else a one-line ``PolicyError``."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        raise PolicyError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PolicyError(f"device {device!r} asked for, but CUDA is not available here")
    return device


def _resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if dtype == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float32
    if dtype not in _DTYPES:
        raise PolicyError(f"unknown dtype {dtype!r}: use one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def _looks_like_hub_id(ref: str) -> bool:
    """'name' or 'org/name' with hub characters; anything path-like is treated as a path."""
    return bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", ref)) and not ref.startswith((".", "-"))


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]


@contextlib.contextmanager
def _quiet_transformers():
    """No 'Loading weights' progress bars: checkpoints are loaded many times per chain."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


# ---- prompts ---------------------------------------------------------------------------------
def build_prompt(tokenizer, statement: str, starter_code: str | None = None) -> str:
    """The text to complete: a chat turn asking for a ```python block, or ``PLAIN_TEMPLATE``.

    With a chat template (``tokenizer.chat_template`` set) the statement goes into one user
    message and the assistant turn is opened (``add_generation_prompt``). Without one the
    plain template is used; starter code, if any, is appended to the statement.
    """
    if getattr(tokenizer, "chat_template", None):
        instruction = CHAT_INSTRUCTION.format(io=STARTER if starter_code else STDIO)
        content = f"{instruction}\n\n{statement.strip()}"
        if starter_code:
            content += f"\n\n```python\n{starter_code.rstrip()}\n```"
        return tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                             tokenize=False, add_generation_prompt=True)
    if starter_code:
        statement = f"{statement.rstrip()}\n{starter_code.rstrip()}"
    return PLAIN_TEMPLATE.format(statement=statement)


# ---- programs --------------------------------------------------------------------------------
# An opening fence: ``` or ~~~ (3+), an optional info string (language), then the line end.
# Chat models do not always start it on a line of its own ("Sure! ```python").
_FENCE = re.compile(r"(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+#.-]*)[^\n`]*\n")
_PYTHON_TAGS = {"", "python", "python3", "py", "py3"}
# Special tokens and role markers that chat models leave around their answer.
_DEBRIS = re.compile(r"<\|[^|>\s]{1,40}\|>|</?s>|<(?:start|end)_of_turn>(?:model|user)?|<eos>|\[/?INST\]")


def extract_program(completion: str) -> str:
    """The program in a completion: the first python-or-untagged fenced block, else plain text.

    - The fenced block may be unterminated (the sample hit its token limit); it then runs
      to the end. A block tagged with another language is used only if no other is found.
    - Plain text is taken whole, up to a new ``# Problem`` header (the plain template's
      start: a base model that runs on begins the next problem there).
    - Chat special tokens (``<|im_end|>``, ``</s>``, ...) are removed and the code dedented.
    """
    text = _DEBRIS.sub("", completion.replace("\r\n", "\n"))
    blocks = list(_fenced_blocks(text))
    chosen = next((code for lang, code in blocks if lang in _PYTHON_TAGS), None)
    if chosen is None and blocks:
        chosen = blocks[0][1]
    if chosen is None:
        chosen = re.split(r"^# Problem[ \t]*$", text, maxsplit=1, flags=re.MULTILINE)[0]
    return textwrap.dedent(chosen).strip("\n").rstrip() + "\n" if chosen.strip() else ""


def _fenced_blocks(text: str):
    """(language, code) of each fenced block, in order; the last may be unterminated."""
    position = 0
    while (opening := _FENCE.search(text, position)) is not None:
        fence = opening["fence"]
        # The closing fence ends its line; it may follow code on that line ("print(x)```").
        closing = re.compile(rf"{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
        end = closing.search(text, opening.end())
        body_end = end.start() if end else len(text)
        yield opening["lang"].lower(), text[opening.end():body_end]
        if end is None:
            return
        position = end.end()
