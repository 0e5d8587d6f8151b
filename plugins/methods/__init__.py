"""Built-in adaptation methods, one module per method."""
