"""SMTP: MX (inbound), submission (587 STARTTLS) and submissions (465 implicit TLS), on aiosmtpd."""
