"""`python -m modelport` runs the command-line interface."""

from modelport.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
