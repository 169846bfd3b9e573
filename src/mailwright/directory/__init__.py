"""Directory service: tenants, domains, principals, addresses, credentials, API keys, logins.

Split by topic (one module each); every function takes the session or `Database` it works in.
Protocol and API code call these and never query the directory tables themselves.
"""
