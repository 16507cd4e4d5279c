"""The registry (where every bin stands, who serves it), the fleet loader, and the device
contract: MQTT contract v1, the operator dispatch messages, and what ingest hands to the rules
(`arrivals`). Imports only core."""
