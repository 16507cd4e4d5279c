"""Every `binwatch` subcommand: each service's start-up and wiring (ingest with the collection and
alert hooks, the collector and the alerter with the MQTT publisher), and the administrative
commands (fleet, keys, MQTT accounts, dead letters, rollups backfill)."""
