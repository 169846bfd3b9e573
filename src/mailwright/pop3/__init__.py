"""POP3 server (RFC 1939, 2449 CAPA, 2595 STLS, 5034 AUTH PLAIN) on the account's INBOX."""
