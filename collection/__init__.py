"""Collection requests: from a full bin to an emptied, verified bin."""
