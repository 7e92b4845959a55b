"""Reading a task YAML into the validated models (`harness.config.schema`): every problem is one error naming the
file, line and key, and what was expected."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from harness.config.resolving import apply_overrides, dotted
from harness.config.schema import REQUIRED_PROFILES, SEARCH_SPACES_DIR, CategoricalParam, TaskConfig, metric_names
from harness.errors import HarnessError


def task_path(task: str) -> Path:
    """A task name resolves to `search_spaces/<name>.yaml`; anything with a suffix or slash is a path."""
    if task.endswith((".yaml", ".yml")) or "/" in task:
        return Path(task)
    path = SEARCH_SPACES_DIR / f"{task}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in SEARCH_SPACES_DIR.glob("*.yaml"))
        raise HarnessError(f"unknown task {task!r}: no {path}; known tasks: {', '.join(known) or 'none'}")
    return path


def load_task(task: str) -> TaskConfig:
    """Load and validate a task YAML; every problem is a HarnessError naming the file, line and key."""
    path = task_path(task)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise HarnessError(f"cannot read task file {path}: {error.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise HarnessError(f"{where}: malformed YAML: {problem}") from None
    if root is None or not isinstance(data, dict):
        raise HarnessError(
            f"{path}: expected a mapping with the sections {', '.join(TaskConfig.model_fields)};"
            f" got {type(data).__name__}"
        )
    lines = _key_lines(root, (), {}, path)
    try:
        config = TaskConfig.model_validate(data)
    except ValidationError as error:
        raise HarnessError(_describe(error, path, lines)) from None
    _cross_check(config, path, lines)
    config._file = path.resolve()
    return config


def _cross_check(config: TaskConfig, path: Path, lines: dict[tuple[Any, ...], int]) -> None:
    """Checks that span sections, each reported at the line of the key at fault."""

    def fail(loc: tuple[Any, ...], message: str) -> HarnessError:
        return HarnessError(f"{path}:{lines.get(loc, 1)}: {dotted(loc)}: {message}")

    if config.task.name != path.stem:
        raise fail(("task", "name"), f"is {config.task.name!r} but the file is {path.name}; they must match")
    for name in config.fields:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise fail(("fields", name), "a field name must be lower_snake_case (it becomes a metric name)")
    missing = [p for p in REQUIRED_PROFILES if p not in config.profiles]
    if missing:
        raise fail(("profiles",), f"must define {', '.join(REQUIRED_PROFILES)}; missing {', '.join(missing)}")
    metrics = metric_names(config.fields)
    if config.search.objective.metric not in metrics:
        raise fail(
            ("search", "objective", "metric"),
            f"{config.search.objective.metric!r} is not a metric of this task; expected one of {', '.join(metrics)}",
        )
    for key, param in config.search.params.items():
        values = param.choices if isinstance(param, CategoricalParam) else (param.low, param.high)
        for index, value in enumerate(values):
            try:
                apply_overrides(config.recipe, {key: value})
            except HarnessError as error:
                loc = ("search", "params", key) + (("choices", index) if isinstance(param, CategoricalParam) else ())
                raise fail(loc, f"{value!r} is not a valid value: {error}") from None


def _key_lines(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], file: Path) -> dict:
    """Map every key path in the YAML document to its 1-based line; duplicate keys are errors, not overwrites."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise HarnessError(f"{file}:{key_node.start_mark.line + 1}: key {dotted((*path, key))!r} appears twice")
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _key_lines(value_node, (*path, key), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _key_lines(item, (*path, index), lines, file)
    return lines


def _describe(error: ValidationError, path: Path, lines: dict[tuple[Any, ...], int]) -> str:
    """Turn pydantic's errors into `file:line: key: what was wrong, what was expected` lines."""
    messages = []
    for item in error.errors():
        # Discriminated unions add the tag (`float`) to the location; it is not a key in the file.
        loc = tuple(part for part in item["loc"] if not (isinstance(part, str) and part in _UNION_TAGS))
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
        key = dotted(loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(TaskConfig, loc[:-1])
            hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
            messages.append(f"{path}:{line}: unknown key {key!r}{hint}")
        elif item["type"] == "missing":
            messages.append(f"{path}:{line}: missing required key {key!r}")
        else:
            message = item["msg"].removeprefix("Value error, ")
            shown = item.get("input")
            got = "" if isinstance(shown, dict | list) else f" (got {shown!r})"
            messages.append(f"{path}:{line}: {key}: {message}{got}")
    return "\n".join(messages)


_UNION_TAGS = {"categorical", "int", "float"}


def _allowed_keys(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys the model declares at `loc`, for 'expected one of' hints."""
    annotation = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if part not in annotation.model_fields:
                return []
            annotation = annotation.model_fields[part].annotation
        elif get_origin(annotation) in (dict, tuple, list):
            annotation = get_args(annotation)[-1] if get_origin(annotation) is dict else get_args(annotation)[0]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is Union:
        models = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return models[0]
    return annotation
