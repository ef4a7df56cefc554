"""Command-line entry point: one subcommand per pipeline stage."""
