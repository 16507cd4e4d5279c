"""Ingest: MQTT in, validated, enriched with the registry's tags, batched into InfluxDB and
acknowledged after the write; dead letters for what it cannot store. The rules that act on
stored messages are hooks (devices.arrivals) the launch layer plugs in."""
