"""AArch64: stage-1 translation with the 4 KiB granule (TTBR0 for user, TTBR1 for the kernel)."""
