"""The values a request gives the columns filled from it, named as both sides name them: each
header under its lower-case name, and these keys for what the service fills (header names are
tokens, which never hold a colon)."""

RECEIVED_AT = ":received_at"  # when the request arrived, a UTC datetime
CLIENT_IP = ":client_ip"  # the client's address, as text; None when unknown
CLIENT_NETWORK = ":client_network"  # the same with its host part zeroed
APP_ID = ":app_id"  # the app the request is for
# The event type the route names; on the route where each event names its own (`_t`), absent,
# and each event's row takes its own.
EVENT_TYPE = ":event_type"
