"""binwatch's shared core: settings, the exception tree, the boundary clients and the CLI."""
