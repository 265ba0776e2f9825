# syntax=docker/dockerfile:1
# Two images from one file (docs/deployment.md):
#   docker build --target api    -t bragg-service-api .      CPU PyTorch: the REST API, or a CPU worker
#   docker build --target worker -t bragg-service-worker .   a PyTorch CUDA runtime: the GPU worker
# Both install the project as the README's "Install by hand" does: PyTorch for the hardware first,
# then `pip install .`. Both run as the unprivileged user bragg (uid 10001) and keep their data in
# /data (BRAGG_DATA_DIR), the volume that the API and the workers share.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime

# ---- api: the REST API on CPU PyTorch (also the image of a CPU worker) ----------------------------
FROM ${PYTHON_IMAGE} AS api
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BRAGG_DATA_DIR=/data NUMBA_CACHE_DIR=/tmp/numba-cache
RUN groupadd --gid 10001 bragg && useradd --uid 10001 --gid bragg --create-home bragg \
 && mkdir -p /data && chown bragg:bragg /data
WORKDIR /opt/bragg-service
RUN pip install "torch>=2.3" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY sim_core ./sim_core
COPY jobs ./jobs
COPY app ./app
COPY worker ./worker
COPY client ./client
COPY bragg ./bragg
RUN pip install . && bragg --help >/dev/null
USER bragg
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["bragg", "api", "--host", "0.0.0.0", "--port", "8000"]

# ---- worker: a GPU worker; the base image brings CUDA and a CUDA build of PyTorch --------------------
FROM ${CUDA_IMAGE} AS worker
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BRAGG_DATA_DIR=/data NUMBA_CACHE_DIR=/tmp/numba-cache
RUN groupadd --gid 10001 bragg && useradd --uid 10001 --gid bragg --create-home bragg \
 && mkdir -p /data && chown bragg:bragg /data
WORKDIR /opt/bragg-service
COPY pyproject.toml README.md ./
COPY sim_core ./sim_core
COPY jobs ./jobs
COPY app ./app
COPY worker ./worker
COPY client ./client
COPY bragg ./bragg
# the base image's torch satisfies the project's range (torch>=2.3): pip keeps it
RUN pip install . && python -c "import torch; assert torch.version.cuda, 'not a CUDA build'"
USER bragg
VOLUME /data
CMD ["bragg", "worker", "--device", "cuda"]
