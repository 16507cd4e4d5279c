"""The HTTP API (FastAPI): routes, their request and response models, authentication by API key;
it reads the domains, the registry and InfluxDB, and is started by `binwatch api`."""
