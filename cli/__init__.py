"""The `persona` command line (typer + rich)."""
