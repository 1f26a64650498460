"""esrag dashboard."""
