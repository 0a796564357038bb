"""What changed between two looks at the guest: processes, mappings and leak loss records,
each compared with what the previous look (live, or another dump) remembered."""
