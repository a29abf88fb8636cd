"""The thin Typer layer: parses arguments, calls library functions, chooses exit codes."""
