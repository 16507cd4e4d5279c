"""Collection requests: from a full bin to an emptied, verified bin; owns the request tables
(`models`)."""
