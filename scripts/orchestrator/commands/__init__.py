"""One module per command (or family of commands); each exposes COMMANDS."""
