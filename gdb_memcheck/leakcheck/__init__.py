"""Leak checking: valgrind's classification, scan mode, and tracking mode's allocation maps."""
