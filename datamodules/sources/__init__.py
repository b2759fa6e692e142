"""Image and data sources: where ground truths and raw measurements come from."""
