"""`python -m netfleet`: the same as the `netfleet` command."""

from netfleet.cli.app import main

main()
