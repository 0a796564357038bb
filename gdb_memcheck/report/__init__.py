"""What the commands print: text and JSON views, the JSON schema, and gdb styles."""
