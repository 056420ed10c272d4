"""Embedded local AWS (moto over HTTP, stream pump) and Lambda event builders: a library for the CLI and tests."""
