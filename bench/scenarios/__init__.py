"""One module per path measured; each adds its rows to the run's context."""
