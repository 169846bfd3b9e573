"""The DNS records a hosted domain needs (expected.py) and their BIND zone-file form (zone.py)."""

from mailwright.dnsrecords.expected import DnsRecord, expected_records, mta_sts_policy, records_for_domain
from mailwright.dnsrecords.zone import render_zone

__all__ = ["DnsRecord", "expected_records", "mta_sts_policy", "records_for_domain", "render_zone"]
