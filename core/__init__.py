"""The ground floor; imports nothing of the project. Settings and the exception tree, and the
clients of every boundary the services share: InfluxDB (`influx`, the line protocol, the
telemetry schema with its rollup tiers, `times`), MQTT (`mqtt`, the collector's and alerter's
`publisher`), SQL (`sql`: engine, sessions, paging), signed webhooks, and the loop the ticking
services run (`ticker`, `signals`)."""
