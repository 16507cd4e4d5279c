"""A deterministic fleet of virtual bins publishing over MQTT, and the operators' crews answering
dispatches through the API (`binwatch simulate`)."""
