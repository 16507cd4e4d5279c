"""What the console calls the registry's codes, as catalog msgids (translated where shown): the
four national streams (with their colours in console.css), site types, request statuses and
rules and the kinds of their history's events, alert types, states and severities."""

from __future__ import annotations

from typing import Final

from api.console.i18n import N_

STREAMS: Final = {
    "recyclable": N_("Recyclable"),
    "hazardous": N_("Hazardous"),
    "kitchen": N_("Kitchen waste"),
    "residual": N_("Residual waste"),
}
SITE_TYPES: Final = {
    "agency": N_("Agency unit"),
    "school": N_("School"),
    "compound": N_("Residential compound"),
}
REQUEST_STATUSES: Final = {
    "open": N_("Waiting for dispatch"),
    "dispatched": N_("Sent to the operator"),
    "acknowledged": N_("A crew is coming"),
    "completed": N_("Emptied, being checked"),
    "verified": N_("Emptied"),
    "disputed": N_("Disputed"),
    "cancelled": N_("Cancelled"),
}
REQUEST_RULES: Final = {
    "threshold": N_("Fill level reached"),
    "kitchen_daily": N_("Daily kitchen-waste round"),
    "forecast": N_("Will be full soon"),
    "manual": N_("Requested by hand"),
}
ALERT_TYPES: Final = {
    "fire": N_("Fire"),
    "overheat": N_("Overheating"),
    "tilt": N_("Tilted"),
    "lid_open": N_("Lid left open"),
    "fault": N_("Device fault"),
    "offline": N_("Offline"),
    "battery_low": N_("Battery low"),
    "full_too_long": N_("Full for too long"),
    "seq_gap": N_("Readings lost"),
    "clock_skew": N_("Clock wrong"),
}
# An alert's states and the events of its history (raised → active, acknowledged, cleared).
ALERT_STATES: Final = {
    "active": N_("Active"),
    "raised": N_("Raised"),
    "acknowledged": N_("Acknowledged"),
    "cleared": N_("Cleared"),
}
REQUEST_EVENTS: Final = {
    "transition": N_("Status changed"),
    "escalation": N_("Escalated"),
    "report": N_("Crew report"),
}
SEVERITIES: Final = {
    "minor": N_("Minor"),
    "major": N_("Major"),
    "critical": N_("Critical"),
}
AREA_KINDS: Final = {
    "city": N_("City"),
    "district": N_("District"),
    "street": N_("Street"),
    "community": N_("Community"),
}
USER_ROLES: Final = {
    "admin": N_("City administrator"),
    "manager": N_("Property manager"),
    "grid": N_("Grid official"),
    "operator": N_("Operator staff"),
    "crew": N_("Vehicle crew"),
}
ESCALATION_LEVELS: Final = {
    0: N_("Not escalated yet"),
    1: N_("Escalated to the community"),
    2: N_("Escalated to the street's squad"),
}
REPORT_PERIODS: Final = {
    1: N_("Last 24 hours"),
    7: N_("Last 7 days"),
    30: N_("Last 30 days"),
}
USER_ACTIONS: Final = {
    "created": N_("Created"),
    "scope_changed": N_("Scope changed"),
    "disabled": N_("Disabled"),
    "password_reset": N_("Password reset"),
}
LANGUAGES: Final = {"zh_CN": N_("Chinese"), "en": N_("English")}
