"""`python -m nnatlas ...` (and `torchrun -m nnatlas ...`) run the command-line interface."""

from nnatlas.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
