"""The champion as an MLflow pyfunc model: task statements in, programs out.

Reads: a checkpoint folder (``save_pretrained`` weights + tokenizer, what ``load_policy`` reads),
or a LoRA adapter folder, which is merged into its base first (``lora.save_merged``): the served
model is then an ordinary folder that loads without peft or the store its base lives in.
Writes: an MLflow pyfunc model (MLmodel, the checkpoint under ``artifacts/``, this package's
code under ``code/``, pinned requirements, a signature and an input example), uploaded as an
MLflow 3 LoggedModel; ``promote`` registers that model as ``selfregress@champion``.

``mlflow.transformers`` is broken on transformers 5.x, hence a ``PythonModel`` over
``selfregress.policy``. The model carries its own copy of ``selfregress`` (``code_paths``), so
``mlflow models serve -m models:/selfregress@champion --env-manager local`` works from any
folder of any environment that has the pinned torch/transformers/mlflow, with or without this
project installed.

Input: a DataFrame with a ``prompt`` column (the task statement) and an optional
``starter_code`` column. Output: a DataFrame with ``program`` (what ``extract_program`` takes out)
and ``completion`` (the raw sampled text), one row per input row. Params (``ParamSchema``, with
the defaults the champion was evaluated at): ``temperature``, ``top_p``, ``max_new_tokens``,
``seed`` (a fixed seed makes a request reproducible on a given device).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Mapping

import mlflow.pyfunc

PACKAGE_DIR = Path(__file__).resolve().parent
CONSTRAINTS = PACKAGE_DIR.parents[1] / "constraints.txt"   # the repository's pins (an editable install)
# What the model needs at serving time (the grader is not among them: it serves, never grades).
REQUIREMENTS = ("mlflow", "torch", "transformers", "tokenizers", "safetensors", "huggingface_hub",
                "numpy", "pandas", "cloudpickle")
CHECKPOINT = "checkpoint"                                   # the artifact key of the weights folder


@dataclass(frozen=True)
class SamplingDefaults:
    """The params of a request, and their defaults in the model's ParamSchema."""
    temperature: float = 1.0      # 0 is greedy
    top_p: float = 1.0
    max_new_tokens: int = 96
    seed: int = 0


# MLflow warns at class creation that ``predict`` has no type hints (a warnings filter does not
# silence it); the signature is given explicitly (``signature()``), so type-hint inference is not
# wanted. Keep a CLI's stderr to its one line.
with warnings.catch_warnings(record=True):
    class ChampionModel(mlflow.pyfunc.PythonModel):
        """A causal LM that answers task statements with programs (see the module docstring)."""

        def load_context(self, context) -> None:
            from selfregress.policy import load_policy

            self.policy = load_policy(context.artifacts[CHECKPOINT])

        def predict(self, context, model_input, params: dict | None = None):
            import pandas as pd

            from selfregress.policy import build_prompt, extract_program
            from selfregress.sampling import sample

            settings = {**asdict(SamplingDefaults()), **(params or {})}
            statements = [str(s) for s in model_input["prompt"]]
            starters = (list(model_input["starter_code"]) if "starter_code" in model_input.columns
                        else [None] * len(statements))
            prompts = [build_prompt(self.policy.tokenizer, s, c if isinstance(c, str) and c else None)
                       for s, c in zip(statements, starters)]
            samples = sample(self.policy, prompts, n=1, temperature=float(settings["temperature"]),
                             top_p=float(settings["top_p"]), max_new_tokens=int(settings["max_new_tokens"]),
                             seed=int(settings["seed"]))
            return pd.DataFrame({"program": [extract_program(t) for t in samples.texts],
                                 "completion": samples.texts})


def signature(defaults: SamplingDefaults):
    """prompt (required) + starter_code (optional) -> program + completion; sampling params."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    params = ParamSchema([ParamSpec("temperature", "double", float(defaults.temperature)),
                          ParamSpec("top_p", "double", float(defaults.top_p)),
                          ParamSpec("max_new_tokens", "long", int(defaults.max_new_tokens)),
                          ParamSpec("seed", "long", int(defaults.seed))])
    return ModelSignature(
        inputs=Schema([ColSpec("string", "prompt"), ColSpec("string", "starter_code", required=False)]),
        outputs=Schema([ColSpec("string", "program"), ColSpec("string", "completion")]),
        params=params)


def input_example():
    import pandas as pd

    return pd.DataFrame({"prompt": ["Read an integer n from standard input and print n * 2.",
                                    "Read a line of words and print them in reverse order."]})


def pinned_requirements(constraints: str | None, names: tuple[str, ...] = REQUIREMENTS) -> list[str]:
    """``name==version`` per name: the pin in ``constraints`` (a constraints.txt text) when it has
    one, else the installed version, else the bare name. Names compare as pip does (case, -/_)."""
    def key(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pins = {}
    for line in (constraints or "").splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
        if match:
            pins[key(match[1])] = match[2]
    out = []
    for name in names:
        version = pins.get(key(name))
        if version is None:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = None
        out.append(f"{name}=={version}" if version else name)
    return out


def save_servable(checkpoint_folder: str | Path, path: str | Path,
                  defaults: SamplingDefaults = SamplingDefaults(),
                  metadata_: Mapping[str, str] | None = None) -> Path:
    """Write the pyfunc model folder at ``path`` (which must not exist or be empty)."""
    checkpoint = Path(checkpoint_folder)
    constraints = CONSTRAINTS.read_text() if CONSTRAINTS.is_file() else None
    with tempfile.TemporaryDirectory() as staging:   # the package's code, without __pycache__
        if (checkpoint / "adapter_config.json").is_file():   # LoRA: base + adapter, merged
            checkpoint = _merged(checkpoint, Path(staging) / CHECKPOINT)
        if not (checkpoint / "config.json").is_file():
            raise ValueError(f"{checkpoint} is not a save_pretrained folder (no config.json)")
        code = shutil.copytree(PACKAGE_DIR, Path(staging) / PACKAGE_DIR.name,
                               ignore=shutil.ignore_patterns("__pycache__"))
        mlflow.pyfunc.save_model(
            str(path), python_model=ChampionModel(), artifacts={CHECKPOINT: str(checkpoint)},
            code_paths=[str(code)], signature=signature(defaults), input_example=input_example(),
            pip_requirements=pinned_requirements(constraints), metadata=dict(metadata_ or {}))
    return Path(path)


def _merged(adapter_folder: Path, out: Path) -> Path:
    from selfregress import lora
    from selfregress.policy import load_policy

    policy = load_policy(adapter_folder, device="cpu")
    return lora.save_merged(policy.adapter, policy.tokenizer, out)


def log_servable(checkpoint_folder: str | Path, client, experiment_id: str, *, run_id: str | None = None,
                 name: str = "champion", tags: Mapping[str, object] | None = None,
                 defaults: SamplingDefaults = SamplingDefaults()) -> str:
    """Save the pyfunc model and upload it as a LoggedModel of ``run_id``; return ``models:/<id>``.

    ``client`` is an ``MlflowClient`` (or the tracking Store's client). The LoggedModel's
    ``model_type`` is ``pyfunc``, its tags are ``tags`` (promote puts the checkpoint's
    LoggedModel id, run, campaign and step there), and it is linked to the run's step 0.
    """
    from mlflow.entities import LoggedModelOutput

    tags = {k: str(v) for k, v in (tags or {}).items()}
    with tempfile.TemporaryDirectory() as folder:
        saved = save_servable(checkpoint_folder, Path(folder) / "model", defaults, metadata_=tags)
        model = client.create_logged_model(experiment_id=experiment_id, name=name, source_run_id=run_id,
                                           tags=tags, model_type="pyfunc",
                                           params={k: str(v) for k, v in asdict(defaults).items()})
        client.log_model_artifacts(model.model_id, str(saved))
        client.finalize_logged_model(model.model_id, "READY")
    if run_id:
        client.log_outputs(run_id, [LoggedModelOutput(model.model_id, 0)])
    return f"models:/{model.model_id}"
