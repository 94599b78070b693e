"""CLI tests (a package, so their basenames may repeat those in tests/)."""
