"""See README.md, "What is where"."""
