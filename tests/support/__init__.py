"""Helpers the tests share: configurations, the HTTP client, PostgreSQL, the service in process
and under twistd. Test modules import from here, never from one another."""
