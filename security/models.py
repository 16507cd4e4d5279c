"""The security tables: API keys and MQTT credentials (issue 7), the console's users and their
sessions (issue 15). Only hashes are stored; the secrets themselves are shown once, when they
are issued (security.keys, security.mqtt_auth, security.users)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from devices.models import Base, UtcDateTime

API_ROLES = ("admin", "manager", "grid", "operator", "crew")
MQTT_KINDS = ("bin", "service", "manager", "admin")


class ApiKey(Base):
    """One API key: `Authorization: Bearer bw_<id>_<secret>`; the id finds the row, the SHA-256
    of the whole token proves it. Managers are scoped to `site_ids` (space-separated), operators
    to `operator_id`, grid officials to `area_id` (a district, street or community), crews to
    `vehicle_id` (an operator's vehicle)."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(f"role IN {API_ROLES!r}", name="ck_api_keys_role"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    site_ids: Mapped[str] = mapped_column(Text, default="")
    operator_id: Mapped[str | None] = mapped_column(ForeignKey("operators.id"))
    area_id: Mapped[str | None] = mapped_column(ForeignKey("areas.id"))
    vehicle_id: Mapped[str | None] = mapped_column(ForeignKey("vehicles.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class MqttCredential(Base):
    """A broker account: a bin (username = its id), a service (ingest, simulator, collector,
    alerter, an operator's dispatch reader), or a person reading alerts (a manager scoped to
    `site_ids`, space-separated; an admin for the city); `password_hash` is already in Mosquitto 2's `$7$` format, so the export
    copies it as is."""

    __tablename__ = "mqtt_credentials"
    __table_args__ = (CheckConstraint(f"kind IN {MQTT_KINDS!r}", name="ck_mqtt_credentials_kind"),)

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    bin_id: Mapped[str | None] = mapped_column(ForeignKey("bins.id"), index=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    site_ids: Mapped[str] = mapped_column(Text, default="", server_default="")


USER_ROLES = API_ROLES  # people and keys share one list of roles (security.scopes)
LOCALES = ("zh_CN", "en")


class User(Base):
    """A person who logs in to the console (issue 15); machines keep using API keys. Managers
    are scoped to `site_ids` (space-separated), grid officials to `area_id` (a district, street
    or community), operators to `operator_id`, crews to `vehicle_id` (an operator's vehicle).
    Only the argon2 hash of the password is kept."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN {USER_ROLES!r}", name="ck_users_role"),
        CheckConstraint(f"locale IN {LOCALES!r}", name="ck_users_locale"),
    )

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    site_ids: Mapped[str] = mapped_column(Text, default="")
    area_id: Mapped[str | None] = mapped_column(ForeignKey("areas.id"))
    operator_id: Mapped[str | None] = mapped_column(ForeignKey("operators.id"))
    vehicle_id: Mapped[str | None] = mapped_column(ForeignKey("vehicles.id"))
    locale: Mapped[str] = mapped_column(String(8))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ConsoleSession(Base):
    """A logged-in browser: the cookie reads `<id>_<secret>`; the id finds the row, the SHA-256
    of the whole token proves it (as for API keys). Ended by logout, by idle time or by age."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(
        ForeignKey("users.username", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())


USER_ACTIONS = ("created", "scope_changed", "disabled", "password_reset")


class UserEvent(Base):
    """The audit trail of the console's accounts: who created a user, changed their scope,
    disabled them or reset their password, when, and (`note`) the role and scope it left.
    Never a password."""

    __tablename__ = "user_events"
    __table_args__ = (CheckConstraint(f"action IN {USER_ACTIONS!r}", name="ck_user_events_action"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    username: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text)
