"""The Docker and Kubernetes deployment files, checked without a Docker engine or a cluster.

Nothing here builds the image or submits a Job. Instead the files go through MLflow's own code
for that path: its MLproject loader, its backend-config parser, its argv builder and its Job
definition function (mlflow.projects.kubernetes, pure functions), and the Dockerfile is read
as text.
"""

import copy
import fnmatch
import importlib
import importlib.util
import json
import re
import shlex
import sys
import types
from pathlib import Path

import pytest
import yaml
from mlflow.projects._project_spec import load_project

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
CONFIG = DEPLOY / "kubernetes_config.json"
TEMPLATE = DEPLOY / "kubernetes_job_template.yaml"
ENTRY_POINTS = {"main", "sweep", "tune", "report", "promote", "bootstrap", "evaluate", "grade"}
# What MLflow appends to the container's env (get_run_env_vars); the template must not set them.
MLFLOW_ENV = {"MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"}
PLACEHOLDERS = {
    "name": "{replaced with MLflow Project name}",
    "image": "{replaced with URI of Docker image created during Project execution}",
    "command": "{replaced with MLflow Project entry point command}",
}


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


def _container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def _mlflow_kubernetes(monkeypatch):
    """mlflow.projects.kubernetes. It imports the `kubernetes` client at the top, which the venv
    may lack; the functions tested here never use it, so stand-ins are put in sys.modules for
    the duration of the test and the module is loaded without being registered."""
    if importlib.util.find_spec("kubernetes") is not None:
        return importlib.import_module("mlflow.projects.kubernetes")
    kube = types.ModuleType("kubernetes")
    config = types.ModuleType("kubernetes.config")
    exc = types.ModuleType("kubernetes.config.config_exception")
    exc.ConfigException = type("ConfigException", (Exception,), {})
    kube.config, config.config_exception = config, exc
    for module in (kube, config, exc):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    spec = importlib.util.find_spec("mlflow.projects.kubernetes")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the files parse

def test_deploy_files_parse():
    assert isinstance(_yaml(DEPLOY / "MLproject")["entry_points"], dict)
    job = _yaml(TEMPLATE)
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    config = json.loads(CONFIG.read_text())
    assert isinstance(config, dict)
    # `mlflow run --backend-config X` reads X as a file only when its name ends in .json
    assert CONFIG.suffix == ".json"
    assert (DEPLOY / "README.md").is_file()


# ---------------------------------------------------------------- MLproject

def test_mlflow_loads_the_deploy_project_as_a_docker_project():
    from mlflow.projects import env_type
    from mlflow.projects.docker import validate_docker_env

    project = load_project(str(DEPLOY))
    assert project.name == "selfregress"
    assert project.env_type == env_type.DOCKER
    image = project.docker_env["image"]
    assert image.rsplit("/", 1)[-1].split(":")[0] == "selfregress", image
    validate_docker_env(project)  # what `mlflow run` checks before building: name and image
    # the local Docker backend requires each name-only entry to be set on the host; keep to pairs
    for item in project.docker_env.get("environment", []):
        assert isinstance(item, list) and len(item) == 2, f"docker_env.environment: {item!r}"


def test_deploy_entry_points_equal_the_top_level_ones():
    top, deploy = _yaml(ROOT / "MLproject"), _yaml(DEPLOY / "MLproject")
    assert deploy["name"] == top["name"]
    assert set(deploy["entry_points"]) == set(top["entry_points"])
    assert ENTRY_POINTS <= set(deploy["entry_points"])
    top_project, deploy_project = load_project(str(ROOT)), load_project(str(DEPLOY))
    for name in top["entry_points"]:
        a, b = top_project.get_entry_point(name), deploy_project.get_entry_point(name)
        assert {p: (s.type, s.default) for p, s in b.parameters.items()} == \
               {p: (s.type, s.default) for p, s in a.parameters.items()}, f"{name}: parameters drifted"
        assert b.command == a.command, f"{name}: command drifted from the top-level MLproject"
    assert deploy["entry_points"] == top["entry_points"]  # everything else too


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_deploy_parameter_is_in_its_command(name):
    entry = load_project(str(DEPLOY)).get_entry_point(name)
    assert entry.parameters
    for param in entry.parameters:
        assert "{" + param + "}" in entry.command, f"{name}: '{param}' is declared but not in the command"


# ---------------------------------------------------------------- backend config

def test_kubernetes_config_is_what_mlflow_parses(monkeypatch):
    from mlflow.projects import _parse_kubernetes_config

    config = json.loads(CONFIG.read_text())
    assert {"kube-context", "repository-uri", "kube-job-template-path"} <= set(config)
    # MLflow opens the template path relative to the working directory: the repository root
    assert (ROOT / config["kube-job-template-path"]).resolve() == TEMPLATE.resolve()
    monkeypatch.chdir(ROOT)
    parsed = _parse_kubernetes_config(config)
    assert parsed["kube-job-template"] == _yaml(TEMPLATE)
    # MLflow tags the built image "<repository-uri>:<git sha>", so the URI carries no tag/digest
    repo = config["repository-uri"]
    assert "@" not in repo and ":" not in repo.rsplit("/", 1)[-1], repo


# ---------------------------------------------------------------- job template

def test_template_has_the_fields_mlflow_fills_in():
    job = _yaml(TEMPLATE)
    container = _container(job)
    assert job["metadata"]["name"] == PLACEHOLDERS["name"]
    assert job["metadata"]["namespace"]
    assert container["name"] == PLACEHOLDERS["name"]
    assert container["image"] == PLACEHOLDERS["image"]
    assert container["command"] == [PLACEHOLDERS["command"]]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 0  # a retry would re-attach to the same MLflow run
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert not MLFLOW_ENV & {e["name"] for e in container.get("env", [])}, \
        "MLflow appends these; a value in the template would be overridden"


def test_mlflow_fills_the_template_for_a_chain(monkeypatch, tmp_path):
    kb = _mlflow_kubernetes(monkeypatch)
    monkeypatch.delenv("KUBE_MLFLOW_TRACKING_URI", raising=False)
    project = load_project(str(DEPLOY))
    command = project.get_entry_point("main").compute_command({"condition": "es", "seed": "2"}, str(tmp_path))
    argv = kb._get_run_command([command])
    env = {"MLFLOW_RUN_ID": "0123abcd", "MLFLOW_TRACKING_URI": "http://mlflow.mlflow:5000",
           "MLFLOW_EXPERIMENT_ID": "7"}
    template = _yaml(TEMPLATE)
    job = kb._get_kubernetes_job_definition(project.name, "registry.example/selfregress-jobs:abc1234",
                                            "sha256:" + "f" * 64, argv, dict(env), copy.deepcopy(template))
    container = _container(job)

    assert "{replaced" not in json.dumps(job)
    name = job["metadata"]["name"]
    assert name.startswith("selfregress-") and len(name) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name  # a valid Job name
    assert job["metadata"]["namespace"] == template["metadata"]["namespace"]
    assert container["name"] == "selfregress"
    assert container["image"] == "registry.example/selfregress-jobs:abc1234@sha256:" + "f" * 64
    assert container["command"][:4] == ["python", "-m", "selfregress", "main"]
    i = container["command"].index("--condition")
    assert container["command"][i + 1] == "es"
    assert container["command"][container["command"].index("--seed") + 1] == "2"
    got = [(e["name"], e.get("value")) for e in container["env"]]
    ours = [(e["name"], e.get("value")) for e in _container(template).get("env", [])]
    assert got == ours + list(env.items())  # the template's env first, MLflow's appended
    # nothing else in the template is touched
    for key in ("name", "image", "command", "env"):
        container.pop(key), _container(template).pop(key, None)
    job["metadata"].pop("name"), template["metadata"].pop("name")
    assert job == template


def test_kube_tracking_uri_overrides_the_submitters(monkeypatch, tmp_path):
    """What the README says: KUBE_MLFLOW_TRACKING_URI gives the pod an in-cluster address."""
    kb = _mlflow_kubernetes(monkeypatch)
    monkeypatch.setenv("KUBE_MLFLOW_TRACKING_URI", "http://mlflow.mlflow.svc:5000")
    job = kb._get_kubernetes_job_definition(
        "selfregress", "r/x", "sha256:0", ["python"], {"MLFLOW_TRACKING_URI": "http://localhost:5000"},
        _yaml(TEMPLATE))
    assert {e["name"]: e["value"] for e in _container(job)["env"]}["MLFLOW_TRACKING_URI"] == \
        "http://mlflow.mlflow.svc:5000"


def _cli_entry_points():
    from selfregress.cli import COMMANDS

    return sorted(n for n in load_project(str(DEPLOY))._entry_points if n in COMMANDS)


@pytest.mark.parametrize("name", _cli_entry_points())
def test_the_pod_parses_the_same_arguments_as_a_local_run(name, monkeypatch, tmp_path):
    """The argv a Job runs, parsed by our CLI, equals what a local `mlflow run` passes (its
    command goes through a shell). MLflow's Kubernetes backend shlex-quotes each token a second
    time and runs it without a shell, so an empty default arrives as the literal "''":
    ``parse_argv`` must undo exactly that."""
    from selfregress.cli import parse_argv

    kb = _mlflow_kubernetes(monkeypatch)
    command = load_project(str(DEPLOY)).get_entry_point(name).compute_command({}, str(tmp_path))
    local, pod = shlex.split(command), kb._get_run_command([command])
    assert pod[:3] == local[:3] == ["python", "-m", "selfregress"]
    if any(s.default == "" for s in load_project(str(DEPLOY)).get_entry_point(name).parameters.values()):
        assert "''" in pod   # the double quoting is really there
    assert vars(parse_argv(pod[3:])) == vars(parse_argv(local[3:]))


def test_a_value_with_spaces_survives_the_pod(monkeypatch, tmp_path):
    from selfregress.cli import parse_argv

    kb = _mlflow_kubernetes(monkeypatch)
    command = load_project(str(DEPLOY)).get_entry_point("report").compute_command(
        {"filter": "tags.model = 'x y'"}, str(tmp_path))
    assert parse_argv(kb._get_run_command([command])[3:]).filter == "tags.model = 'x y'"


# ---------------------------------------------------------------- Dockerfile

def _dockerfile():
    """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        current += " " + line.rstrip("\\").strip() if current else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            lines.append(current)
            current = ""
    assert not current, "Dockerfile ends inside a continuation"
    return [(s.split(None, 1)[0].upper(), s.split(None, 1)[1] if " " in s else "") for s in lines]


def _index(instructions, predicate, what):
    hits = [i for i, (op, args) in enumerate(instructions) if predicate(op, args)]
    assert hits, f"Dockerfile: no {what}"
    return hits[0]


def test_dockerfile_pins_cpu_torch_before_the_project():
    ins = _dockerfile()
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for op, a in ins if op == "ARG" and "=" in a}
    torch_at = _index(ins, lambda op, a: op == "RUN" and "pip install" in a and "torch==" in a, "torch install")
    torch_line = ins[torch_at][1]
    pin = re.search(r"torch==(\S+)", torch_line).group(1)
    assert pin == "2.13.0"
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    assert f"torch=={pin}" in constraints, "the Dockerfile's torch pin differs from constraints.txt"
    index = re.search(r"--(?:index-url|extra-index-url)\s+(\S+)", torch_line).group(1)
    index = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), index)
    assert index == "https://download.pytorch.org/whl/cpu"
    project_at = _index(ins, lambda op, a: op == "RUN" and "pip install" in a and re.search(r"\s\.(\s|$)", a),
                        "project install (pip install ... .)")
    project_line = ins[project_at][1]
    assert torch_at < project_at
    assert re.search(r"(-c|--constraint)\s+constraints\.txt", project_line)
    assert " -e " not in f" {project_line} ", "an editable install breaks under MLflow's WORKDIR"
    copied = [a for op, a in ins[:project_at] if op == "COPY"]
    assert any("constraints.txt" in a.split() for a in copied), "constraints.txt is not copied before use"


def test_dockerfile_installs_bubblewrap():
    ins = _dockerfile()
    _index(ins, lambda op, a: op == "RUN" and "apt-get install" in a and "bubblewrap" in a.split(),
           "apt-get install of bubblewrap")


def test_dockerfile_default_command_runs_the_cli():
    ins = _dockerfile()
    # no ENTRYPOINT: `docker run IMAGE python -m selfregress main ...` (and Kubernetes' command,
    # which MLflow sets to the entry point's argv) replace CMD and run as given
    assert not [a for op, a in ins if op == "ENTRYPOINT"]
    cmds = [a for op, a in ins if op == "CMD"]
    assert cmds, "Dockerfile: no CMD"
    assert json.loads(cmds[-1])[:3] == ["python", "-m", "selfregress"]


def _dockerignore():
    return [p.strip().rstrip("/") for p in (ROOT / ".dockerignore").read_text().splitlines()
            if p.strip() and not p.strip().startswith("#")]


def _ignored(path: str, patterns) -> bool:
    path = path.removeprefix("./").rstrip("/")
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        pattern = pattern[3:] if pattern.startswith("**/") else pattern
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern):
            ignored = not negate
    return ignored


def test_every_copied_path_exists_and_reaches_the_build_context():
    patterns = _dockerignore()
    copies = [a for op, a in _dockerfile() if op == "COPY" and "--from" not in a]
    assert copies
    for args in copies:
        sources = [s for s in shlex.split(args)[:-1] if not s.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path"
            assert not _ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_local_state_out_of_the_image():
    patterns = _dockerignore()
    for name in ("mlflow.db", "mlruns", ".venv", "optuna.db"):
        assert _ignored(name, patterns), f".dockerignore does not exclude {name}"
    assert not _ignored("src", patterns)  # sanity: the matcher is not ignoring everything


def test_deploy_readme_names_existing_files():
    text = (DEPLOY / "README.md").read_text()
    named = set(re.findall(r"deploy/kubernetes/[\w.\-]+", text))
    assert {"deploy/kubernetes/kubernetes_config.json"} <= named
    for path in named:
        assert (ROOT / path).exists(), f"README names {path}, which does not exist"
