# syntax=docker/dockerfile:1
# Two images from one build, chosen with --target:
#   docker build --target operator -t <registry>/distillrun-operator:0.1.0 .
#       the kopf operator: distillrun with its `operator` extra only (no torch, no Ray), started
#       as `kopf run -m distillrun.operator.main`; the Helm chart passes --namespace or
#       --all-namespaces as its arguments.
#   docker build --target jobs -t <registry>/distillrun-jobs:0.1.0 .
#       every Ray head and worker of a stage's RayJob: distillrun with its `jobs` extra (Ray,
#       torch, DeepSpeed, the teacher SDKs); KubeRay starts Ray in it and submits
#       `python -m distillrun.jobs.entrypoint /etc/distillrun/run.json`.
# Both run as the unprivileged user 10001, which the chart's Pod Security `restricted` settings
# require (runAsNonRoot with a numeric UID).

# The base of both: the official Python image unless `--build-arg BASE_IMAGE=<image>` names
# another Debian bookworm image with python3, python3-venv and useradd (a cluster without
# access to Docker Hub; the e2e test bed builds on its own mmdebstrap image this way).
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 10001 distillrun \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/distillrun \
       --shell /usr/sbin/nologin distillrun

# The operator's virtual environment, built apart so the sources stay out of the final image.
FROM base AS operator-build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY distillrun ./distillrun
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install ".[operator]"

FROM base AS operator
COPY --from=operator-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
USER 10001:10001
WORKDIR /home/distillrun
# 8080: kopf's liveness endpoint (/healthz); 9090: Prometheus metrics (DISTILLRUN_METRICS_PORT).
EXPOSE 8080 9090
ENTRYPOINT ["kopf", "run", "-m", "distillrun.operator.main", "--standalone", "--liveness=http://0.0.0.0:8080/healthz", "--log-format=json"]
CMD ["--all-namespaces"]

# The jobs' virtual environment. gcc stays in the final image too: DeepSpeed compiles its ops
# (and its shared-memory communication op) on first use.
FROM base AS jobs-build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY distillrun ./distillrun
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install ".[jobs]"

FROM base AS jobs
# wget: KubeRay's readiness and liveness probes of Ray pods run `wget` against the raylet and
# dashboard agent; bash: KubeRay starts Ray with `/bin/bash -lc` (the base image has it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential wget \
    && rm -rf /var/lib/apt/lists/*
COPY --from=jobs-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/distillrun
USER 10001:10001
WORKDIR /home/distillrun
CMD ["python", "-m", "distillrun.jobs.entrypoint", "/etc/distillrun/run.json"]
