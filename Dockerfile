# The project's image: every entry point runs in it (`python -m selfregress ...`,
# `python -m grader ...`), and deploy/kubernetes uses it for `mlflow run --backend kubernetes`.
FROM python:3.11-slim

# bubblewrap is the grader's sandbox; without it the grader falls back to rlimits only, loudly.
# Inside a container, bwrap needs user namespaces (or run the container with --privileged).
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true

# torch first, pinned, from the CPU index: an unpinned torch pulls several GB of CUDA wheels.
# For GPUs, build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir torch==2.13.0 --index-url ${TORCH_INDEX}

COPY constraints.txt pyproject.toml README.md ./
COPY src ./src
COPY grader ./grader
RUN pip install --no-cache-dir -c constraints.txt .

COPY MLproject conda.yaml ./
CMD ["python", "-m", "selfregress", "--help"]
