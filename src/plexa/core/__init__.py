"""The core layer: specs, config, messages, the lifecycle table, states and paths. Pure: no I/O
beyond reading config files, and no imports from the layers above."""
