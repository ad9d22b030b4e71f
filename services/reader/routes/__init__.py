"""The reader's routes, one module per concern."""
