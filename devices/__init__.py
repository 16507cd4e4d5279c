"""The registry (where every bin stands, who serves it) and the MQTT contract v1."""
