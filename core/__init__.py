"""The bottom layer: the config schema engine, one generic registry, the result
vocabulary (run states, method kinds, metric keys). Imports nothing of the project."""
