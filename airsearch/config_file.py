"""Reading a config file's text safely: JSON or YAML, with limits on size, nesting and alias expansion.

A config is a short mapping of options, so a file that is huge, nested deeper than
:data:`MAX_CONFIG_DEPTH` or expands (through YAML aliases) to more than :data:`MAX_CONFIG_VALUES`
values is refused with :class:`ConfigTooLarge` before it can exhaust memory or the stack.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

MAX_CONFIG_BYTES = 1_000_000  # a config is a short mapping of options
MAX_CONFIG_DEPTH = 32  # nesting of lists and mappings
MAX_CONFIG_VALUES = 100_000  # values after YAML aliases are expanded (an alias bomb is refused)


class ConfigTooLarge(ValueError):
    """A config file nested too deep or expanding to too many values."""


def _parse_json(text: str) -> Any:
    try:
        data = json.loads(text)
    except RecursionError:
        raise ConfigTooLarge(f"nested deeper than {MAX_CONFIG_DEPTH} levels") from None
    _check_depth(data)
    return data


def _check_depth(data: Any) -> None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_CONFIG_DEPTH:
                raise ConfigTooLarge(f"nested deeper than {MAX_CONFIG_DEPTH} levels")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((v, depth + 1) for v in items)


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with limits: depth while composing (its composer recurses), and the
    number of values the document expands to, aliases counted each time they are used."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                raise ConfigTooLarge(f"nested deeper than {MAX_CONFIG_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values ``node`` stands for once every alias is expanded (shared nodes counted once
    per use; each distinct node computed once, so this is quick even for an alias bomb)."""
    if id(node) in memo:
        if memo[id(node)] < 0:
            raise ConfigTooLarge("a YAML alias refers to the value that holds it")
        return memo[id(node)]
    memo[id(node)] = -1  # being counted
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = size
    return size


def _parse_yaml(text: str) -> Any:
    loader = _LimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_CONFIG_VALUES:
            raise ConfigTooLarge(f"expands to more than {MAX_CONFIG_VALUES:,} values (YAML aliases)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_config_text(text: str, *, json_format: bool) -> Any:
    """The value a config file's ``text`` holds (JSON when ``json_format``, else YAML, safely).

    Raises :class:`ConfigTooLarge` past the limits, and the parser's own error
    (:class:`json.JSONDecodeError` or :class:`yaml.YAMLError`) for text that does not parse."""
    return _parse_json(text) if json_format else _parse_yaml(text)
