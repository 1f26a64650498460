"""esrag query."""
