# fedota: one image for the coordinator and the device daemon (`fedota ...` is the entrypoint).
#   docker build -t fedota .
#   docker run --rm fedota --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch's CPU build first, from PyTorch's CPU index, in a layer of its own: the project's loose
# `torch>=2.4` is then already met, so pip never pulls the (much larger) CUDA build from PyPI.
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"

# Only what the wheel is built from (see .dockerignore), then the project with PostgreSQL support.
WORKDIR /build
COPY pyproject.toml README.md ./
COPY fedota ./fedota
COPY protos ./protos
COPY delta ./delta
COPY storage ./storage
COPY server ./server
COPY client ./client
COPY ml ./ml
RUN pip install ".[postgres]" \
    && cd / && rm -rf /build

# An unprivileged user owns the coordinator's data and the device's state; named volumes mounted
# on these paths start out with this ownership.
RUN useradd --system --uid 10001 --create-home --home-dir /home/fedota fedota \
    && install -d -o fedota -g fedota -m 0700 /data /state
USER fedota
WORKDIR /home/fedota

ENTRYPOINT ["fedota"]
CMD ["--help"]
