"""Networks, the DIP base module, shared callbacks, and one file per method."""
