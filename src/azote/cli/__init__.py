"""The `azote` command: one verb per stage."""
