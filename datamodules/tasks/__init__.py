"""One module per task family; each registers its datasets on import."""
