"""esrag: retrieval-augmented generation over large document collections on Elasticsearch."""

__version__ = "0.1.0"
