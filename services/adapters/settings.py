"""The one settings object: every tunable of breachwatch, read from `BW_*` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.config import DEFAULT_RULES as _D
from services.core.config import RuleConfig


class RuleTimings(BaseSettings):
    """Overrides of the rules engine's tunables; the defaults are the core's own
    (services/core/config.py), so there is one source of truth."""

    model_config = SettingsConfigDict(env_prefix="BW_RULES_", extra="ignore")

    dwell_s: float = Field(_D.dwell_s, gt=0, description="a possible breach alerts after this long")
    dwell_fixes: int = Field(
        _D.dwell_fixes, ge=1, description="...or after this many possible fixes"
    )
    hysteresis_s: float = Field(
        _D.hysteresis_s, ge=0, description="clearly outside this long closes"
    )
    contact_window_s: float = Field(
        _D.contact_window_s, gt=0, description="fixes this close in time are paired"
    )
    signal_lost_after_s: float = Field(
        _D.signal_lost_after_s, gt=0, description="no fix this long: signal lost"
    )
    max_future_skew_s: float = Field(
        _D.max_future_skew_s, ge=0, description="a ts further ahead is refused"
    )
    max_speed_mps: float = Field(
        _D.max_speed_mps, gt=0, description="faster than this is an outlier"
    )
    battery_low_pct: int = Field(
        _D.battery_low_pct, ge=0, le=100, description="below this: battery warning"
    )


class DispatchSettings(BaseSettings):
    """The alert dispatcher's timers and webhook retries."""

    model_config = SettingsConfigDict(env_prefix="BW_DISPATCH_", extra="ignore")

    escalate_after_s: float = Field(
        60.0, gt=0, description="a breach nobody acknowledged this long escalates"
    )
    escalate_after_high_risk_s: float = Field(30.0, gt=0, description="...for a high-risk order")
    referral_breaches: int = Field(
        3, ge=1, description="this many breaches of one order open a victim-support referral"
    )
    referral_window_days: float = Field(7.0, gt=0, description="...within this many days")
    webhook_backoff_base_s: float = Field(2.0, gt=0, description="first retry after about this")
    webhook_backoff_cap_s: float = Field(600.0, gt=0, description="retries at most this apart")
    webhook_retry_for_s: float = Field(
        24 * 3600.0, gt=0, description="then the delivery is dead-lettered for an admin"
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="one attempt's time limit")
    webhook_allowed_hosts: str = Field(
        "127.0.0.1,localhost",
        description="comma-separated hosts a webhook may point at; `*` for any",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BW_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:19092"
    database_url: str = "postgresql+asyncpg://breachwatch:breachwatch@127.0.0.1:15432/breachwatch"
    topic_prefix: str = Field("bw.", description="prepended to every topic name of DESIGN.md")
    cjib_orders_topic: str = "cjib.protection-orders.v1"
    partitions: int = Field(12, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1)
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=1, le=65535)
    jwt_secret: SecretStr = SecretStr("development-only-secret-change-me-in-production")
    jwt_issuer: str = "breachwatch"
    max_body_bytes: int = Field(1_000_000, ge=1024)
    consumer_session_timeout_ms: int = Field(
        10_000, ge=1_000,
        description="a consumer silent this long is dead; its partitions move (Apache Kafka "
        "refuses less than its group.min.session.timeout.ms, 6 s by default)",
    )  # fmt: skip
    log_level: str = "INFO"
    rules: RuleTimings = Field(default_factory=RuleTimings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)

    def rule_config(self) -> RuleConfig:
        """The core's rules with this deployment's overrides."""
        return RuleConfig(**self.rules.model_dump())

    def topic(self, name: str) -> str:
        """The full name of one of the topics of DESIGN.md, e.g. `positions.v1`."""
        return f"{self.topic_prefix}{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
