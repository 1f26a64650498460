"""esrag workers."""
