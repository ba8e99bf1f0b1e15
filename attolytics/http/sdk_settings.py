"""What the browser SDKs load before they send: analytics.js's settings (its `cdnURL`), and
RudderStack's source configuration (its `configUrl`), each saying to send to this service and to
nothing else."""

from attolytics.config import App

# Settings analytics.js takes to mean: one destination, this service; no metrics sent elsewhere.
_SEGMENT_IO_BASE = {
    "unbundledIntegrations": [],
    "addBundledMetadata": False,
    "maybeBundledConfigIds": {},
}


def analytics_js_settings(app: App, write_key: str, api_host: str, protocol: str) -> dict:
    """The settings analytics.js loads from `<cdnURL>/v1/projects/<writeKey>/settings`: its
    Segment.io destination sends to `protocol://api_host` (this service's host and port, and
    /v1), and it loads no other destination, plugin or middleware."""
    return {
        "integrations": {
            "Segment.io": {**_SEGMENT_IO_BASE, "apiKey": write_key, "apiHost": api_host, "protocol": protocol},
        },
        "plan": {"track": {"__default": {"enabled": True, "integrations": {}}},
                 "identify": {"__default": {"enabled": True}}, "group": {"__default": {"enabled": True}}},
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def rudder_source_config(app: App, write_key: str) -> dict:
    """The source configuration RudderStack's SDKs load from `<configUrl>/sourceConfig`: an
    enabled source with no device-mode destination, so that every call comes to this service."""
    return {
        "isHosted": False,
        "source": {
            "id": app.app_id,
            "name": app.app_id,
            "writeKey": write_key,
            "workspaceId": "attolytics",
            "enabled": True,
            "config": {},
            "destinations": [],
        },
    }
