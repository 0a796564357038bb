"""ELF symbols, DWARF lines and inlined calls, CFI unwinding, and frames made readable."""
