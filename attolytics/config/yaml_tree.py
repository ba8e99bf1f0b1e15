"""Parsed YAML that remembers where each value came from, so every mistake names file and key."""

from typing import Any

import yaml

from attolytics.config.model import ConfigError


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with the same key twice instead of keeping the last."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(text: str, source: str) -> "Node":
    """The document in `text` as a Node; a YAML mistake is a ConfigError naming line and column."""
    try:
        document = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        if problem.startswith("duplicate key"):
            raise ConfigError(f"{source}: line {mark.line + 1}: {problem}") from None
        raise ConfigError(f"{source}: YAML syntax error{where}: {problem}") from None
    return Node(source, "", document)


class Node:
    """A value in the parsed YAML with the key path that leads to it, for error messages."""

    def __init__(self, source: str, path: str, value: Any):
        self.source = source
        self.path = path
        self.value = value

    def error(self, message: str) -> ConfigError:
        """A ConfigError about this value: `file: key.path: message`."""
        where = f"{self.source}: {self.path}" if self.path else self.source
        return ConfigError(f"{where}: {message}")

    def child(self, key, value) -> "Node":
        """The node of `value`, found under `key` (a mapping key, or a list index) of this one."""
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
        else:
            path = f"{self.path}.{key}" if self.path else str(key)
        return Node(self.source, path, value)

    def mapping(self, allowed: set[str], required: set[str] = frozenset()) -> dict[str, "Node"]:
        """The children of a mapping whose keys are all `allowed` and include the `required`."""
        if not isinstance(self.value, dict):
            raise self.error(f"expected a mapping, got {describe(self.value)}")
        children = {}
        for key, value in self.value.items():
            if not isinstance(key, str):
                raise self.error(f"keys must be strings, got {key!r}")
            if key not in allowed:
                raise self.child(key, value).error(
                    f"unknown key; expected one of {', '.join(sorted(allowed))}"
                )
            children[key] = self.child(key, value)
        for key in sorted(required - children.keys()):
            raise self.child(key, None).error("missing")
        return children

    def items(self) -> list["Node"]:
        """The children of a list."""
        if not isinstance(self.value, list):
            raise self.error(f"expected a list, got {describe(self.value)}")
        return [self.child(i, v) for i, v in enumerate(self.value)]

    def string(self) -> str:
        """A non-empty string."""
        if not isinstance(self.value, str) or not self.value:
            raise self.error(f"expected a non-empty string, got {describe(self.value)}")
        return self.value

    def boolean(self) -> bool:
        """true or false."""
        if not isinstance(self.value, bool):
            raise self.error(f"expected true or false, got {describe(self.value)}")
        return self.value

    def seconds(self) -> float:
        """A duration in seconds, more than 0 and at most an hour."""
        if type(self.value) not in (int, float) or not 0 < self.value <= 3600:
            raise self.error(f"expected seconds, more than 0 and at most 3600, got {describe(self.value)}")
        return float(self.value)

    def positive_int(self) -> int:
        """An integer above 0."""
        if type(self.value) is not int or self.value <= 0:
            raise self.error(f"expected a positive integer, got {describe(self.value)}")
        return self.value


def describe(value: Any) -> str:
    """A YAML value as a message names it."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)
