"""glibc's malloc heap, walked from outside the process."""
