"""The `cxloop` command line: one module per command group."""
