"""Classical reconstructions stored as runs so tables have a reference."""
