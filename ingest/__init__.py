"""esrag ingest."""
