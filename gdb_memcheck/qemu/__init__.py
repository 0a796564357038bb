"""What QEMU itself offers: guest RAM read straight from the QEMU process."""
