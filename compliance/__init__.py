"""Compliance reports: sorting accuracy, overflow, device health and collection per site, area
and operator, the cleanliness score and rankings (docs/metrics.md). It stands on the domains it
reports on (collection's requests; the readings through core's telemetry schema) and is read by
the API."""
