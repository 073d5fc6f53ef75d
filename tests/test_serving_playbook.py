"""The win-back playbook: validation with line numbers, and actions by driver, class and band."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from serving.playbook import DEFAULT_PLAYBOOK, PlaybookError, load_playbook, parse_playbook, registry_groups

DEFAULT_TEXT = DEFAULT_PLAYBOOK.read_text(encoding="utf-8")


def _line_of(text: str, needle: str, occurrence: int = 1) -> int:
    start = -1
    for _ in range(occurrence):
        start = text.index(needle, start + 1)
    return text[:start].count("\n") + 1


def test_shipped_playbook_is_valid_against_the_feature_registry() -> None:
    playbook = load_playbook(features=registry_groups())
    assert playbook.owners == ["account_manager", "customer_service", "finance", "marketing"]
    assert {"complaints", "receivables", "declining_orders", "value_decline", "no_contact", "general"} <= set(playbook.drivers)


def test_a_wrong_owner_is_named_with_its_line() -> None:
    text = DEFAULT_TEXT.replace("owner: finance\n        deadline_days: 7", "owner: treasury\n        deadline_days: 7", 1)
    with pytest.raises(PlaybookError) as err:
        parse_playbook(text, "mine.yaml")
    message = str(err.value)
    assert "mine.yaml" in message
    assert "actions.receivables.key_account[0].owner" in message
    assert "'treasury' is not one of account_manager, customer_service, finance, marketing" in message
    assert f"line {_line_of(text, 'owner: treasury')}" in message


def test_a_field_of_the_wrong_type_is_named_with_its_line() -> None:
    text = DEFAULT_TEXT.replace("deadline_days: 1\n", "deadline_days: soon\n", 1)
    with pytest.raises(PlaybookError) as err:
        parse_playbook(text, "mine.yaml")
    assert f"line {_line_of(text, 'deadline_days: soon')}, actions.complaints.key_account[0].deadline_days" in str(err.value)


def test_broken_yaml_and_unknown_fields_are_reported() -> None:
    with pytest.raises(PlaybookError, match=r"line 3: not valid YAML"):
        parse_playbook("version: 1\nowners: [a]\n  oops: [", "bad.yaml")
    with pytest.raises(PlaybookError, match=r"max_action: Extra inputs are not permitted"):
        parse_playbook(DEFAULT_TEXT.replace("max_actions: 4", "max_action: 4"), "typo.yaml")


def test_every_class_needs_actions_and_the_last_class_catches_all() -> None:
    text = DEFAULT_TEXT.replace("  - name: standard\n    label: other active customer\n", "")
    with pytest.raises(PlaybookError) as err:
        parse_playbook(text, "x.yaml")
    assert "the last class must have no conditions" in str(err.value)
    assert "unknown class 'standard'" in str(err.value)


def test_unknown_feature_in_a_driver_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "playbook.yaml"
    path.write_text(DEFAULT_TEXT.replace("      - median_gap_days\n", "      - median_gap_dayz\n"), encoding="utf-8")
    with pytest.raises(PlaybookError, match=r"drivers.declining_orders.features: unknown feature 'median_gap_dayz'"):
        load_playbook(path, features=registry_groups())


def test_missing_file_says_where_the_format_is(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match="no playbook at"):
        load_playbook(tmp_path / "nope.yaml")


@pytest.mark.parametrize("band", ["high", "medium"])
def test_every_at_risk_customer_gets_an_action(band: str) -> None:
    playbook = load_playbook()
    for driver in playbook.drivers:
        for tier, pyramid in (("A", "gold"), ("B", "iron"), ("C", "lead"), (None, None)):
            actions = playbook.plan([(driver, "because")], abc_class=tier, pyramid_tier=pyramid, risk_band=band, as_of=date(2025, 1, 1))
            assert actions, (driver, tier, pyramid)
            assert all(a.owner in playbook.owners and a.deadline_days >= 0 and a.why for a in actions)
            assert len(actions) <= playbook.max_actions
    assert playbook.plan([], abc_class="B", pyramid_tier="iron", risk_band=band)[0].driver == "general"


def test_low_risk_gets_no_actions() -> None:
    assert load_playbook().plan([("complaints", "x")], abc_class="A", pyramid_tier="gold", risk_band="low") == []


def test_key_accounts_and_low_value_customers_are_treated_differently() -> None:
    playbook = load_playbook()
    key = playbook.plan([("declining_orders", "ordered late")], abc_class="A", pyramid_tier="gold", risk_band="high", as_of=date(2025, 1, 1))
    low = playbook.plan([("declining_orders", "ordered late")], abc_class="C", pyramid_tier="lead", risk_band="high", as_of=date(2025, 1, 1))
    assert key[0].customer_class == "key_account" and low[0].customer_class == "low_value"
    assert key[0].owner == "account_manager" and low[0].owner == "marketing"
    assert {a.action for a in key}.isdisjoint({a.action for a in low})
    assert key[0].due_by == date(2025, 1, 8) and key[0].because == "ordered late"


def test_actions_follow_the_strongest_driver_first_without_duplicates() -> None:
    playbook = load_playbook()
    actions = playbook.plan(
        [("receivables", "overdue"), ("complaints", "open"), ("receivables", "again")],
        abc_class="B", pyramid_tier="iron", risk_band="medium",
    )
    assert [a.driver for a in actions][:2] == ["receivables", "complaints"]
    assert actions[0].owner == "finance"
    assert len({a.action for a in actions}) == len(actions)


def test_a_customer_gone_quiet_gets_win_back_steps_not_prevention() -> None:
    playbook = load_playbook()
    drivers = [("complaints", "a complaint has been open for 40 days")]
    keep = playbook.plan(drivers, abc_class="A", pyramid_tier="gold", risk_band="high", stage="retain")
    back = playbook.plan(drivers, abc_class="A", pyramid_tier="gold", risk_band="high", stage="win_back", as_of=date(2025, 1, 1))
    assert keep[0].driver == "complaints" and {a.driver for a in back} == {"win_back"}
    assert not {a.action for a in keep} & {a.action for a in back}
    assert back[0].because == "a complaint has been open for 40 days" and back[0].due_by == date(2025, 1, 8)
    assert "cause" in back[0].action.lower() or "stop ordering" in back[0].action.lower()
    assert playbook.plan(drivers, abc_class="A", pyramid_tier="gold", risk_band="low", stage="win_back") == []


def test_only_low_value_customers_gone_quiet_are_let_go_candidates() -> None:
    playbook = load_playbook()
    assert playbook.let_go_candidate("win_back", "C", "lead")
    assert not playbook.let_go_candidate("retain", "C", "lead")
    assert not playbook.let_go_candidate("win_back", "A", "gold")


def test_win_back_actions_must_cover_every_class_and_let_go_must_name_one() -> None:
    text = DEFAULT_TEXT.replace("let_go: [low_value]", "let_go: [tiny]")
    with pytest.raises(PlaybookError, match="let_go.*unknown class 'tiny'"):
        parse_playbook(text, "mine.yaml")
    start = DEFAULT_TEXT.index("\n  standard:\n    - key: win_back_ask_why")
    end = DEFAULT_TEXT.index("\n  low_value:\n    - key: win_back_automated_message")
    with pytest.raises(PlaybookError, match="no win-back actions for class 'standard'"):
        parse_playbook(DEFAULT_TEXT[:start] + DEFAULT_TEXT[end:], "mine.yaml")


def test_every_planned_action_carries_its_playbook_key() -> None:
    playbook = load_playbook()
    keys = playbook.action_keys()
    planned = playbook.plan([("complaints", "open complaint"), ("declining_orders", "late")], abc_class="A", pyramid_tier="gold", risk_band="high")
    quiet = playbook.plan([], abc_class="C", pyramid_tier="lead", risk_band="high", stage="win_back")
    assert planned and quiet
    for action in [*planned, *quiet]:
        assert action.key is not None and keys[action.key] == action.action


def test_a_key_naming_two_actions_and_a_missing_key_are_named_with_their_line() -> None:
    text = DEFAULT_TEXT.replace("key: complaint_senior_follow_up", "key: complaint_call_today", 1)
    with pytest.raises(PlaybookError) as err:
        parse_playbook(text, "mine.yaml")
    assert "actions.complaints.key_account[1].key" in str(err.value) and "already names another action" in str(err.value)
    missing = DEFAULT_TEXT.replace("      - key: complaint_call_today\n        action:", "      - action:", 1)
    with pytest.raises(PlaybookError) as err:
        parse_playbook(missing, "mine.yaml")
    assert "actions.complaints.key_account[0].key" in str(err.value) and "Field required" in str(err.value)
