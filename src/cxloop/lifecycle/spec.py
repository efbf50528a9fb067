"""Lifecycle models from YAML files and the shipped presets, with errors that name the line.

A model file is read into YAML nodes first, so that a validation error at
``stages[2].enter[0].where[0].value`` can be reported with the line it is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cxloop.domain.lifecycle import LifecycleModel

PRESETS_PACKAGE = "cxloop.lifecycle.presets"


class ModelFileError(ValueError):
    """A model file or body that is not a valid lifecycle model; ``problems`` lists each
    (location, line or None, reason)."""

    def __init__(self, source: str, problems: list[tuple[str, int | None, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [
            f"{source}{f':{line}' if line else ''}: {where}: {reason}"
            for where, line, reason in problems
        ]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Preset:
    key: str
    name: str
    description: str
    stages: tuple[str, ...]
    model: LifecycleModel


def presets() -> list[Preset]:
    """The shipped models, in a stable order."""
    found = []
    folder = resources.files(PRESETS_PACKAGE)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            model = parse_model(entry.read_text(encoding="utf-8"), f"preset {entry.name}")
            found.append(
                Preset(
                    key=model.key,
                    name=model.name,
                    description=model.description,
                    stages=tuple(s.name for s in model.stages),
                    model=model,
                )
            )
    return found


def preset(key: str) -> Preset | None:
    return next((p for p in presets() if p.key == key), None)


def load_model_file(path: Path) -> LifecycleModel:
    if not path.is_file():
        raise ModelFileError(str(path), [("file", None, "no such file")])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(str(path), [("file", None, f"cannot be read: {exc}")]) from exc
    return parse_model(text, path.name)


def parse_model(text: str, source: str) -> LifecycleModel:
    """Validate YAML text as a lifecycle model; every problem is reported with its line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = str(getattr(exc, "problem", None) or exc)
        raise ModelFileError(source, [("yaml", line, reason)]) from exc
    if not isinstance(data, dict):
        raise ModelFileError(source, [("file", None, "must hold a mapping (key, name, stages)")])
    duplicates = _duplicate_stage_keys(node)
    if duplicates:
        raise ModelFileError(source, duplicates)
    return validate_model(data, source, node)


def validate_model(data: Any, source: str, node: yaml.Node | None = None) -> LifecycleModel:
    """Validate already-parsed data (a YAML file's or an API body's)."""
    try:
        return LifecycleModel.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            where = _dotted(loc) or "model"
            reason = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                reason = "is not a known field"
            problems.append((where, _line(node, loc), reason))
        raise ModelFileError(source, problems) from exc


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith("function"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest YAML node the location reaches."""
    if node is None:
        return None
    current = node
    for part in loc:
        if isinstance(current, yaml.MappingNode) and isinstance(part, str):
            match = next((v for k, v in current.value if k.value == part), None)
            if match is None:
                key_node = next((k for k, _ in current.value if k.value == part), None)
                return (key_node or current).start_mark.line + 1
            current = match
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(current.value):
                break
            current = current.value[part]
        else:
            break
    return int(current.start_mark.line) + 1


def _duplicate_stage_keys(node: yaml.Node | None) -> list[tuple[str, int | None, str]]:
    if not isinstance(node, yaml.MappingNode):
        return []
    stages = next((v for k, v in node.value if k.value == "stages"), None)
    if not isinstance(stages, yaml.SequenceNode):
        return []
    seen: dict[str, int] = {}
    problems = []
    for index, stage in enumerate(stages.value):
        if not isinstance(stage, yaml.MappingNode):
            continue
        key = next((v for k, v in stage.value if k.value == "key"), None)
        if isinstance(key, yaml.ScalarNode):
            if key.value in seen:
                problems.append(
                    (
                        f"stages[{index}].key",
                        key.start_mark.line + 1,
                        f"the key {key.value!r} is already used by stages[{seen[key.value]}]",
                    )
                )
            else:
                seen[key.value] = index
    return problems


def model_to_yaml(model: LifecycleModel) -> str:
    data = model.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
