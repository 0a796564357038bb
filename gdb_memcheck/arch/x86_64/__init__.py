"""x86-64: 4- and 5-level paging, and the KASLR slide from the IDT."""
