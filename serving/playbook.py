"""The win-back playbook: from a customer's risk drivers and class to concrete actions.

The playbook is a YAML file (the shipped default is ``serving/playbook.yaml``, taken from the
retention practice in DOMAIN.md). It names the owners, the customer classes (key account, low
value, standard), which features point to which driver (complaints, receivables, declining
orders, value decline, no contact, general) and, per driver and class, the actions: what to do,
who owns it, within how many days and why. :func:`load_playbook` validates the file and names the
field and line of any mistake.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.registry import FEATURES
from features.stage import WIN_BACK

DEFAULT_PLAYBOOK = Path(__file__).with_name("playbook.yaml")
RiskBand = Literal["high", "medium", "low"]
GENERAL = "general"


class PlaybookError(ValueError):
    """The playbook file cannot be used; the message names the file, line and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionSpec(_Strict):
    """One action as written in the playbook."""

    key: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        max_length=64,
        description="The action's stable identifier: CRMs record a done action by it (POST /actions); keep it when the wording changes.",
    )
    action: str = Field(min_length=3, description="What to do, in the team's words.")
    owner: str = Field(description="Who does it: one of the playbook's owners.")
    deadline_days: int = Field(ge=0, le=365, description="Within how many days of the as-of date.")
    why: str = Field(min_length=3, description="Why this action, for this driver and class.")


class CustomerClass(_Strict):
    """A class of customers the team treats alike (分门别类)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Identifier used under `actions`.")
    label: str = Field(default="", description="Readable name.")
    match: Literal["any", "all"] = Field(default="any", description="Whether one listed condition is enough or all must hold.")
    abc_class: list[Literal["A", "B", "C"]] = Field(default_factory=list, description="ABC classes that belong here.")
    pyramid_tier: list[Literal["platinum", "gold", "iron", "lead"]] = Field(
        default_factory=list, description="Pyramid tiers that belong here."
    )

    @property
    def catch_all(self) -> bool:
        """Whether the class has no conditions (matches everyone)."""
        return not self.abc_class and not self.pyramid_tier

    def matches(self, abc_class: str | None, pyramid_tier: str | None) -> bool:
        """Whether a customer with this ABC class and pyramid tier belongs to the class.

        Args:
            abc_class: "A", "B", "C" or None when unknown.
            pyramid_tier: "platinum", "gold", "iron", "lead" or None when unknown.

        Returns:
            True when the class's conditions hold (always for a catch-all class).
        """
        checks = []
        if self.abc_class:
            checks.append(abc_class in self.abc_class)
        if self.pyramid_tier:
            checks.append(pyramid_tier in self.pyramid_tier)
        if not checks:
            return True
        return all(checks) if self.match == "all" else any(checks)


class DriverSpec(_Strict):
    """Which features point to one driver of risk."""

    label: str = Field(default="", description="Readable name.")
    groups: list[str] = Field(default_factory=list, description="Feature groups (features.registry) of this driver.")
    features: list[str] = Field(default_factory=list, description="Single features of this driver; they win over groups.")


class Playbook(_Strict):
    """A validated playbook."""

    version: Literal[1] = Field(description="Format version of the playbook file.")
    owners: list[str] = Field(min_length=1, description="Who may own an action.")
    act_on_bands: list[RiskBand] = Field(default=["high", "medium"], min_length=1, description="Risk bands that get actions.")
    max_actions: int = Field(default=4, ge=1, le=20, description="Most actions per customer.")
    classes: list[CustomerClass] = Field(min_length=1, description="Customer classes, first match wins; the last matches everyone.")
    drivers: dict[str, DriverSpec] = Field(description="Driver name to the features that point to it.")
    actions: dict[str, dict[str, list[ActionSpec]]] = Field(description="Driver to class (or `default`) to actions.")
    escalation: dict[str, list[ActionSpec]] = Field(
        default_factory=dict, description="Class to extra actions for customers in the high band."
    )
    win_back: dict[str, list[ActionSpec]] = Field(
        default_factory=dict,
        description="Class (or `default`) to the win-back actions of customers gone quiet; without it they get the prevention actions.",
    )
    let_go: list[str] = Field(default_factory=list, description="Classes whose customers gone quiet are let-go candidates.")

    @model_validator(mode="after")
    def _consistent(self) -> Playbook:
        problems: list[tuple[tuple[Any, ...], str]] = []
        names = [c.name for c in self.classes]
        for i, name in enumerate(names):
            if names.index(name) != i:
                problems.append((("classes", i, "name"), f"class {name!r} is defined twice"))
        if not self.classes[-1].catch_all:
            problems.append((("classes", len(self.classes) - 1), "the last class must have no conditions, so that every customer has a class"))
        for i, cls in enumerate(self.classes[:-1]):
            if cls.catch_all:
                problems.append((("classes", i), f"class {cls.name!r} has no conditions, so the classes after it are never used"))
        if GENERAL not in self.drivers:
            problems.append((("drivers",), f"a driver named {GENERAL!r} is needed for risk no other driver explains"))
        for driver in self.drivers:
            if driver not in self.actions:
                problems.append((("actions",), f"driver {driver!r} has no actions"))
        known = set(names) | {"default"}
        for driver, by_class in self.actions.items():
            if driver not in self.drivers:
                problems.append((("actions", driver), f"unknown driver {driver!r} (drivers: {', '.join(self.drivers)})"))
                continue
            for cls_name, specs in by_class.items():
                if cls_name not in known:
                    problems.append((("actions", driver, cls_name), f"unknown class {cls_name!r} (classes: {', '.join(names)}, default)"))
                if not specs:
                    problems.append((("actions", driver, cls_name), "needs at least one action"))
                for j, spec in enumerate(specs):
                    if spec.owner not in self.owners:
                        problems.append((("actions", driver, cls_name, j, "owner"), f"owner {spec.owner!r} is not one of {', '.join(self.owners)}"))
            if "default" not in by_class:
                for cls_name in names:
                    if cls_name not in by_class:
                        problems.append((("actions", driver), f"no actions for class {cls_name!r} (add them or a `default` list)"))
        for section in ("escalation", "win_back"):
            for cls_name, specs in getattr(self, section).items():
                if cls_name not in known:
                    problems.append(((section, cls_name), f"unknown class {cls_name!r}"))
                for j, spec in enumerate(specs):
                    if spec.owner not in self.owners:
                        problems.append(((section, cls_name, j, "owner"), f"owner {spec.owner!r} is not one of {', '.join(self.owners)}"))
        if self.win_back and "default" not in self.win_back:
            problems.extend((("win_back",), f"no win-back actions for class {n!r} (add them or a `default` list)") for n in names if n not in self.win_back)
        problems.extend((("let_go",), f"unknown class {n!r} (classes: {', '.join(names)})") for n in self.let_go if n not in names)
        claimed: dict[str, str] = {}
        for driver, driver_spec in self.drivers.items():
            for feature in driver_spec.features:
                if feature in claimed:
                    problems.append((("drivers", driver, "features"), f"feature {feature!r} is listed under {claimed[feature]!r} and {driver!r}"))
                claimed[feature] = driver
        problems.extend(self._key_problems())
        if problems:
            raise _Problems(problems)
        return self

    def _specs(self) -> Iterator[tuple[tuple[Any, ...], ActionSpec]]:
        """Every action of the playbook with its location."""
        for driver, by_class in self.actions.items():
            for cls_name, specs in by_class.items():
                for j, spec in enumerate(specs):
                    yield ("actions", driver, cls_name, j, "key"), spec
        for section in ("escalation", "win_back"):
            for cls_name, specs in getattr(self, section).items():
                for j, spec in enumerate(specs):
                    yield (section, cls_name, j, "key"), spec

    def _key_problems(self) -> list[tuple[tuple[Any, ...], str]]:
        """One key names one action (the same text may be listed in several places under its key)."""
        problems: list[tuple[tuple[Any, ...], str]] = []
        text_of: dict[str, str] = {}
        key_of: dict[str, str] = {}
        for loc, spec in self._specs():
            if text_of.setdefault(spec.key, spec.action) != spec.action:
                problems.append((loc, f"key {spec.key!r} already names another action ({text_of[spec.key]!r}); give this one its own key"))
            if key_of.setdefault(spec.action, spec.key) != spec.key:
                problems.append((loc, f"the action {spec.action!r} already has the key {key_of[spec.action]!r}; use it here too"))
        return problems

    def action_keys(self) -> dict[str, str]:
        """Every action's key and its text.

        Returns:
            Key to the action's text, in playbook order.
        """
        return {spec.key: spec.action for _, spec in self._specs()}

    def customer_class(self, abc_class: str | None, pyramid_tier: str | None) -> CustomerClass:
        """The first class the customer matches.

        Args:
            abc_class: the customer's ABC class, if known.
            pyramid_tier: the customer's pyramid tier, if known.

        Returns:
            Its class (the catch-all class when nothing else matches).
        """
        for cls in self.classes:
            if cls.matches(abc_class, pyramid_tier):
                return cls
        return self.classes[-1]

    def driver_of(self, feature: str, group: str | None) -> str:
        """The driver a feature points to.

        Args:
            feature: the feature name.
            group: its group in the feature registry, if known.

        Returns:
            The driver name (``general`` when no driver claims it).
        """
        for name, spec in self.drivers.items():
            if feature in spec.features:
                return name
        if group is not None:
            for name, spec in self.drivers.items():
                if group in spec.groups:
                    return name
        return GENERAL

    def actions_for(self, driver: str, class_name: str) -> list[ActionSpec]:
        """The actions of one driver for one class.

        Args:
            driver: a driver name.
            class_name: a class name.

        Returns:
            The class's own list, else the driver's ``default`` list, else the ``general`` driver's.
        """
        by_class = self.actions.get(driver) or self.actions[GENERAL]
        if class_name in by_class:
            return by_class[class_name]
        if "default" in by_class:
            return by_class["default"]
        return self.actions_for(GENERAL, class_name) if driver != GENERAL else []

    def plan(
        self,
        drivers: Sequence[tuple[str, str]],
        *,
        abc_class: str | None,
        pyramid_tier: str | None,
        risk_band: RiskBand,
        as_of: date | None = None,
        stage: str | None = None,
    ) -> list[PlannedAction]:
        """The actions for one customer: prevention while it still buys, win-back once it has gone quiet.

        Args:
            drivers: ``(driver, reason sentence)`` pairs, strongest first (from the customer's reasons).
            abc_class: the customer's ABC class, if known.
            pyramid_tier: the customer's pyramid tier, if known.
            risk_band: the customer's risk band; bands outside ``act_on_bands`` get no actions.
            as_of: the scoring date; sets each action's ``due_by``.
            stage: ``win_back`` for a customer gone quiet (the ``win_back`` actions of its class, when the
                playbook has them); anything else gets the prevention actions.

        Returns:
            Up to ``max_actions`` actions, strongest driver first; at least one for every band in
            ``act_on_bands`` (the ``general`` driver's when no reason names another).
        """
        if risk_band not in self.act_on_bands:
            return []
        cls = self.customer_class(abc_class, pyramid_tier)
        if stage == WIN_BACK and self.win_back:
            because = drivers[0][1] if drivers else ""
            specs = self.win_back.get(cls.name, self.win_back.get("default", []))
            return [_planned(spec, WIN_BACK, because, cls.name, as_of) for spec in specs][: self.max_actions]
        seen_drivers: list[tuple[str, str]] = []
        for driver, because in drivers:
            if driver not in (d for d, _ in seen_drivers):
                seen_drivers.append((driver, because))
        if not seen_drivers:
            seen_drivers.append((GENERAL, ""))
        planned: list[PlannedAction] = []
        seen_text: set[str] = set()

        def add(spec: ActionSpec, driver: str, because: str) -> None:
            if spec.action not in seen_text:
                seen_text.add(spec.action)
                planned.append(_planned(spec, driver, because, cls.name, as_of))

        for driver, because in seen_drivers:
            for spec in self.actions_for(driver, cls.name):
                add(spec, driver, because)
        if risk_band == "high":
            for spec in self.escalation.get(cls.name, self.escalation.get("default", [])):
                add(spec, "escalation", "")
        return planned[: self.max_actions]

    def let_go_candidate(self, stage: str | None, abc_class: str | None, pyramid_tier: str | None) -> bool:
        """Whether a customer gone quiet is a let-go candidate (its class is in ``let_go``).

        Args:
            stage: its stage.
            abc_class: its ABC class, if known.
            pyramid_tier: its pyramid tier, if known.

        Returns:
            True for a ``win_back`` customer of a let-go class.
        """
        return stage == WIN_BACK and self.customer_class(abc_class, pyramid_tier).name in self.let_go


def _planned(spec: ActionSpec, driver: str, because: str, class_name: str, as_of: date | None) -> PlannedAction:
    return PlannedAction(
        key=spec.key,
        action=spec.action,
        owner=spec.owner,
        deadline_days=spec.deadline_days,
        due_by=as_of + timedelta(days=spec.deadline_days) if as_of else None,
        why=spec.why,
        driver=driver,
        because=because or None,
        customer_class=class_name,
    )


class PlannedAction(BaseModel):
    """A win-back action for one customer, as the API returns it."""

    model_config = ConfigDict(frozen=True)

    key: str | None = Field(
        default=None,
        description="The action's stable identifier in the playbook: send it as `action` to POST /actions when it is done (null only in risk lists stored before keys existed).",
    )
    action: str = Field(description="What to do.")
    owner: str = Field(description="Who does it: account_manager, customer_service, finance or marketing.")
    deadline_days: int = Field(description="Within how many days of the as-of date.")
    due_by: date | None = Field(default=None, description="The as-of date plus the deadline.")
    why: str = Field(description="Why this action, for this driver and this class of customer.")
    driver: str = Field(
        description="The risk driver it answers: complaints, receivables, declining_orders, value_decline, no_contact, general, escalation, or win_back for a customer gone quiet."
    )
    because: str | None = Field(default=None, description="The reason sentence that triggered it, when one did.")
    customer_class: str = Field(description="The customer's class in the playbook (key_account, standard, low_value).")


class _Problems(ValueError):
    """Consistency problems found after the fields parsed, each with its location."""

    def __init__(self, problems: list[tuple[tuple[Any, ...], str]]) -> None:
        super().__init__("; ".join(msg for _, msg in problems))
        self.problems = problems


def _line_index(node: yaml.Node, path: tuple[Any, ...] = (), out: dict[tuple[Any, ...], int] | None = None) -> dict[tuple[Any, ...], int]:
    """Map every path in a composed YAML document to its 1-based line."""
    out = {} if out is None else out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            out[(*path, k)] = key.start_mark.line + 1
            _line_index(value, (*path, k), out)
            out[(*path, k)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), out)
    return out


def _locate(lines: Mapping[tuple[Any, ...], int], loc: Sequence[Any]) -> tuple[str, int | None]:
    """A dotted field name and the line of the deepest known part of ``loc``."""
    parts = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
    name = ""
    for p in parts:
        name += f"[{p}]" if isinstance(p, int) else (f".{p}" if name else str(p))
    for end in range(len(parts), -1, -1):
        if parts[:end] in lines:
            return name or "(top level)", lines[parts[:end]]
    return name or "(top level)", None


def parse_playbook(text: str, source: str = "playbook") -> Playbook:
    """Validate playbook YAML text.

    Args:
        text: the YAML document.
        source: the file name for messages.

    Returns:
        The playbook.

    Raises:
        PlaybookError: the YAML does not parse or breaks a rule; the message names line and field.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise PlaybookError(f"{source}{where}: not valid YAML: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(raw, dict) or node is None:
        raise PlaybookError(f"{source}: expected a mapping with version, owners, classes, drivers and actions")
    lines = _line_index(node)
    try:
        return Playbook.model_validate(raw)
    except ValidationError as err:
        messages = []
        for e in err.errors(include_url=False):
            problems = e.get("ctx", {}).get("error")
            if isinstance(problems, _Problems):
                for loc, msg in problems.problems:
                    field, line = _locate(lines, loc)
                    messages.append(f"line {line}, {field}: {msg}" if line else f"{field}: {msg}")
                continue
            field, line = _locate(lines, e["loc"])
            messages.append(f"line {line}, {field}: {e['msg']}" if line else f"{field}: {e['msg']}")
        raise PlaybookError(f"{source}: {len(messages)} problem(s) in the playbook:\n  - " + "\n  - ".join(messages)) from None


def load_playbook(path: str | Path | None = None, *, features: Mapping[str, str] | None = None) -> Playbook:
    """Read and validate a playbook file.

    Args:
        path: the YAML file; the shipped default when None.
        features: feature name to group (from ``features.registry.FEATURES``); when given, a
            driver naming an unknown feature or group is an error.

    Returns:
        The playbook.

    Raises:
        PlaybookError: the file is missing, does not parse or breaks a rule.
    """
    file = Path(path) if path is not None else DEFAULT_PLAYBOOK
    if not file.is_file():
        raise PlaybookError(f"no playbook at {file}: give a YAML file (see {DEFAULT_PLAYBOOK} for the format)")
    text = file.read_text(encoding="utf-8")
    playbook = parse_playbook(text, source=str(file))
    if features is not None:
        groups = set(features.values())
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        assert node is not None  # parse_playbook above rejects an empty document
        lines = _line_index(node)
        problems = []
        for driver, spec in playbook.drivers.items():
            for feature in spec.features:
                if feature not in features:
                    _, line = _locate(lines, ("drivers", driver, "features"))
                    problems.append(f"line {line}, drivers.{driver}.features: unknown feature {feature!r}")
            for group in spec.groups:
                if group not in groups:
                    _, line = _locate(lines, ("drivers", driver, "groups"))
                    problems.append(f"line {line}, drivers.{driver}.groups: unknown feature group {group!r} (groups: {', '.join(sorted(groups))})")
        if problems:
            raise PlaybookError(f"{file}: {len(problems)} problem(s) in the playbook:\n  - " + "\n  - ".join(problems))
    return playbook


def registry_groups() -> dict[str, str]:
    """Feature name to group, from the feature registry.

    Returns:
        The mapping used to check a playbook's drivers.
    """
    return {name: spec.group for name, spec in FEATURES.items()}
