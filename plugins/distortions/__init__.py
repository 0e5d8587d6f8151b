"""Built-in distortions, one module per family group."""
