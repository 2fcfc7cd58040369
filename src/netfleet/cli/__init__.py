"""The `netfleet` command line (Typer + Rich)."""
