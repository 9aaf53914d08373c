"""The `delf` command: one subcommand per original script, with the same flags."""
