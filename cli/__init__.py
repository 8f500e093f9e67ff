"""The `stageline` command line."""
