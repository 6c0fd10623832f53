"""The `modelport` command line."""
