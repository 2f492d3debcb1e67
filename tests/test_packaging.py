"""What can be checked of the packaging without a Docker engine or conda."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_installs_pinned_torch_before_the_project():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    runs = [line for line in lines if line.startswith("RUN ")]
    torch_at = next(i for i, line in enumerate(lines) if "torch==2.13.0" in line)
    project_at = next(i for i, line in enumerate(lines) if "-c constraints.txt ." in line)
    assert next(line for line in lines if line.startswith("FROM")).startswith("FROM python:3.11")
    assert torch_at < project_at
    assert any("bubblewrap" in line for line in lines)
    copied = " ".join(line for line in lines if line.startswith("COPY"))
    for path in ("constraints.txt", "pyproject.toml", "src", "grader", "MLproject"):
        assert path in copied, path
    assert len(runs) == 3   # apt packages (bubblewrap), pinned torch, the project


def test_constraints_pin_the_tested_versions():
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    for name in ("torch", "mlflow", "transformers", "tokenizers", "optuna", "accelerate"):
        assert name in pins, name
    conda = (ROOT / "conda.yaml").read_text()
    for name in ("torch", "mlflow", "transformers", "tokenizers", "optuna"):
        assert f"{name}=={pins[name]}" in conda, name


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/setup.sh && .venv/bin/python -m pytest -q" in readme
    assert "mlflow run . --env-manager local -P condition=es -P seed=2" in readme
    assert "bash scripts/setup.sh && .venv/bin/python -m pytest -q" in (ROOT / ".ci/run").read_text()
