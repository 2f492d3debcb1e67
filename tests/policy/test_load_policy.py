"""load_policy: local folders, models:/ URIs, and one-line errors for what cannot be loaded."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from selfregress.errors import UserError
from selfregress.policy import Policy, PolicyError, load_policy


def assert_one_line(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message and len(message) < 400
    for fragment in fragments:
        assert fragment in message


def test_loads_a_local_folder_in_eval_mode_on_cpu(qwen_dir):
    policy = load_policy(qwen_dir, device="cpu")
    assert isinstance(policy, Policy) and policy.device == torch.device("cpu")
    assert not policy.model.training
    assert policy.tokenizer.eos_token_id is not None


def test_save_then_load_gives_the_same_model(qwen, tmp_path):
    qwen.save(tmp_path / "copy")
    again = load_policy(tmp_path / "copy", device="cpu")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(qwen.model(input_ids=ids).logits, again.model(input_ids=ids).logits)
    assert again.tokenizer.get_vocab() == qwen.tokenizer.get_vocab()


def test_a_missing_path_is_a_one_line_policy_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(PolicyError) as error:
        load_policy(missing)
    assert_one_line(error, str(missing), "does not exist")
    assert isinstance(error.value, ValueError) and isinstance(error.value, UserError)


def test_a_folder_without_a_model_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError) as error:
        load_policy(tmp_path)
    assert_one_line(error, "config.json")


def test_a_corrupt_model_folder_is_a_policy_error(qwen_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(PolicyError) as error:
        load_policy(broken)
    assert_one_line(error, "cannot load model")


@pytest.mark.parametrize("kwargs, fragment", [(dict(dtype="float64"), "unknown dtype"),
                                              (dict(device="tpu9"), "device")])
def test_bad_device_or_dtype_is_a_policy_error(qwen_dir, kwargs, fragment):
    with pytest.raises(PolicyError) as error:
        load_policy(qwen_dir, **kwargs)
    assert_one_line(error, fragment)


def test_models_uri_is_downloaded_through_tracking(qwen_dir, monkeypatch):
    """models:/ goes through selfregress.tracking.download_model (a stub here: no mlflow)."""
    asked = []
    stub = types.ModuleType("selfregress.tracking")
    stub.download_model = lambda uri: asked.append(uri) or qwen_dir
    monkeypatch.setitem(sys.modules, "selfregress.tracking", stub)
    policy = load_policy("models:/selfregress-base@base", device="cpu")
    assert asked == ["models:/selfregress-base@base"] and policy.tokenizer.eos_token_id is not None


def test_policy_does_not_import_mlflow_at_module_level():
    """Only the models:/ branch needs mlflow (through selfregress.tracking), imported lazily."""
    import ast
    import inspect

    from selfregress import policy, sampling

    for module in (policy, sampling):
        for node in ast.parse(inspect.getsource(module)).body:          # top-level statements only
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any("mlflow" in n or "tracking" in n for n in names), ast.dump(node)


def test_an_unreachable_hub_id_fails_fast_in_one_line(monkeypatch):
    from selfregress import policy

    monkeypatch.setattr(policy, "_hub_reachable", lambda: False)
    with pytest.raises(PolicyError) as error:
        load_policy("no-such-org/no-such-model")
    assert_one_line(error, "no-such-org/no-such-model", "does not exist", "unreachable")
