"""Memory over time: processes sampled at interrupts of a running guest (RSS, VSZ, and
heap in use from glibc's own counters), and the loop that runs the guest between samples."""
