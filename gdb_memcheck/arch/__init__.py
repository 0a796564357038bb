"""What differs between CPU architectures: paging and the kernel's placement, one subpackage per CPU."""
