"""Reading the OpenAPI document a service serves."""


def resolve(document: dict, node: dict) -> dict:
    """The node a local `$ref` of `document` names, or the node itself."""
    if "$ref" not in node:
        return node
    for part in node["$ref"].removeprefix("#/").split("/"):
        document = document[part]
    return document


def event_schema(document: dict, path: str) -> dict:
    """The JSON schema of one event POSTed to `path` (JSON and text/plain bodies alike)."""
    body = document["paths"][path]["post"]["requestBody"]["content"]
    assert body["application/json"] == body["text/plain"]
    return resolve(document, body["application/json"]["schema"]["properties"]["events"]["items"])
