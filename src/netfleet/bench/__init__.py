"""Benchmarks run by `netfleet bench …`: JSON out, each against a baseline from the same run."""
