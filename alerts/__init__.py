"""Alerts: fire, tilt, lid, faults, overheating, flat batteries, bins full too long, offline bins
and bad data raise one alert each while the condition lasts, reach the people who must act, and
clear by themselves when the condition ends (see docs/alerts.md); owns the alert tables (`models`)."""
