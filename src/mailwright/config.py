"""Settings: defaults < TOML file < environment (MAILWRIGHT_*) < CLI flags.

One `Settings` object is built at start-up and handed to every layer; nothing reads the
environment later, so a test can run several differently configured servers in one process.
Port 0 means "this listener is off" (tests pass explicit ephemeral ports instead).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAILWRIGHT_", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str = ""
    hostname: str = "mail.localhost"
    bind: str = "127.0.0.1"
    public_ipv4: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_ipv6: Annotated[list[str], NoDecode] = Field(default_factory=list)

    http_port: int = 8080
    smtp_port: int = 2525
    submission_port: int = 2587
    submissions_port: int = 2465
    imap_port: int = 2143
    imaps_port: int = 2993
    pop3_port: int = 2110
    pop3s_port: int = 2995

    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Plain-text LOGIN/AUTH before STARTTLS is refused except from loopback when this is true
    # (handy for local development and the benchmarks, never for public listeners).
    allow_plaintext_auth_on_loopback: bool = True
    # IMAP autologout (RFC 9051 §5.4: at least 30 minutes); smaller values are for tests.
    imap_autologout_seconds: float = 1800

    admin_token: str | None = None
    workers: int = 1
    # auto (uvloop when installed), uvloop or asyncio: see runtime/eventloop.py.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"

    # Outbound delivery (delivery/): MX port, per-domain next hops like Postfix's transport_maps
    # ({"b.test": "b.test:2525"}, "[host]:port" skips the MX lookup), retry backoff base/cap,
    # how often the runner looks for due mail, and the SRS secret (empty = <data_dir>/srs.key).
    outbound_port: int = 25
    transport_map: dict[str, str] = Field(default_factory=dict)
    queue_retry_base_seconds: float = 60.0
    queue_retry_max_seconds: float = 3600.0
    queue_poll_seconds: float = 5.0
    outbound_timeout_seconds: float = 60.0
    outbound_concurrency: int = 20
    # A runner's claim on queued mail; renewed while it works, so a crashed node's claims free
    # up this long after the crash.
    queue_lease_seconds: float = 60.0
    srs_secret: str = ""

    # Limits (per account unless noted).
    max_message_size: int = 50 * 1024 * 1024
    default_quota_bytes: int = 0  # 0 = unlimited
    send_per_hour: int = 300
    send_per_day: int = 7200
    password_min_length: int = 8
    # Management/REST API: requests per minute per API key (or per client IP without a valid key);
    # 0 = unlimited. Counted per process.
    api_rate_per_minute: int = 600
    # MTA-STS policy served at /.well-known/mta-sts.txt: testing | enforce | none.
    mta_sts_mode: str = "testing"
    mta_sts_max_age: int = 86400

    # SMTP protocol limits (see smtp/limits.py for what each one answers).
    smtp_timeout: float = 300.0  # seconds of client silence before we hang up (RFC 5321 4.5.3.2)
    smtp_data_timeout: float = 600.0  # the whole DATA phase
    smtp_max_recipients: int = 100  # RCPT per message (RFC 5321 minimum); more -> 452 4.5.3
    smtp_max_commands: int = 10000  # commands per connection
    smtp_max_errors: int = 20  # 4xx/5xx replies per connection before 421
    smtp_max_line_length: int = 10000  # octets per DATA line (RFC says 1000; we are lenient, bounded)
    smtp_verify_inbound: bool = True  # SPF/DKIM/DMARC at the MX
    smtp_save_sent: bool = False  # submission: file a Sent copy for every message (else only on request)

    # Argon2id cost: OWASP's minimum profile (m=19 MiB, t=2, p=1) keeps a login at ~15 ms.
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19456
    argon2_parallelism: int = 1

    # DNS resolver used for MX lookups and SPF/DKIM/DMARC; empty = system resolver.
    dns_nameservers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    dns_port: int = 53

    queue_lifetime_seconds: int = 5 * 24 * 3600
    # Delay notice (Postfix's delay_warning_time): a message still undeliverable (4xx, network or
    # DNS trouble) this long after it was queued gets ONE RFC 3464 "Action: delayed" DSN to its
    # sender; 0 = never. Default 4 h, as Sendmail (Timeout.queuewarn) and Exchange: with a 5-day
    # lifetime, a sender otherwise learns of a dead destination only days later, when it may be
    # too late to use another channel. (Postfix ships it off, Exim at 24 h; both date from when
    # delay warnings to forged senders were a backscatter source. Our queue holds authenticated
    # submissions and SPF/DMARC-checked forwards, and never notifies a null sender.)
    queue_delay_notice_after: float = 4 * 3600
    # Messages up to this many bytes are made durable by the database commit (their bytes in
    # the blob journal) instead of fsyncs of their own blob file: see storage/blobjournal.py.
    # 0 = every blob file is fsynced before the commit. The fsyncs it saves cost the same at
    # any size, while what it costs grows with the bytes (written to the WAL, again by the
    # checkpoint, read back to free the pages when the row is dropped): past ~16 KiB the file's
    # own fsync, run in a thread while the rows are written, is cheaper (measured in
    # storage/blobjournal.py's docstring).
    blob_journal_max: int = 16 * 1024
    blob_journal_flush_seconds: float = 1.0  # how often a process writes and syncs the journaled files
    # Agent inboxes (myagentmail dialect): domain of inboxes created without one ("" = hostname);
    # created as a system domain on first use. Webhook retries back off from this base (seconds).
    agent_default_domain: str = ""
    webhook_retry_base_seconds: float = 10.0
    webhook_max_attempts: int = 8
    # Self-service mailboxes (mail.cx dialect): JWT signing secret ("" = <data_dir>/jwt.key), the
    # quota of a signed-up account, anonymous sign-up/sign-in rates per client IP per minute,
    # accounts one IP may create per day (0 = unlimited), custom domains per Pro user.
    jwt_secret: str = ""
    selfservice_quota_bytes: int = 41943040
    signup_rate_per_minute: int = 10
    token_rate_per_minute: int = 30
    signup_max_per_ip_per_day: int = 50
    pro_max_domains: int = 5
    log_level: str = "info"
    log_json: bool = False

    @field_validator("public_ipv4", "public_ipv6", "dns_nameservers", mode="before")
    @classmethod
    def _split_csv(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'mailwright.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    def listeners(self) -> dict[str, int]:
        """Every listener and its port (0 = off), in the order they are printed."""
        return {
            "http": self.http_port,
            "smtp": self.smtp_port,
            "submission": self.submission_port,
            "submissions": self.submissions_port,
            "imap": self.imap_port,
            "imaps": self.imaps_port,
            "pop3": self.pop3_port,
            "pop3s": self.pop3s_port,
        }


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional TOML file, the environment, then explicit overrides.

    The environment beats the file (containers override files with env), and explicit
    overrides (CLI flags) beat both. `None` overrides are ignored so unset flags keep defaults.
    """
    file_values: dict[str, Any] = {}
    if config_file is not None:
        with open(config_file, "rb") as fh:
            raw = tomllib.load(fh)
        file_values = {k.replace("-", "_"): v for k, v in raw.get("mailwright", raw).items()}
    env_settings = Settings()
    env_set = env_settings.model_fields_set
    merged: dict[str, Any] = {**file_values}
    for name in env_set:
        merged[name] = getattr(env_settings, name)
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return Settings.model_validate(merged) if merged else env_settings
