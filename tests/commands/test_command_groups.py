"""A command group given no command says so in one line, in the user's words (COMMAND), never
with the parser's internal names (`gallery_command`)."""

from __future__ import annotations

import argparse

import pytest

from facestream.cli import build_parser, main


def groups() -> list[str]:
    """Every top-level command that needs a command of its own (`review` runs the service without)."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(
        name
        for name, p in sub.choices.items()
        if any(isinstance(a, argparse._SubParsersAction) and a.required for a in p._actions)
    )


def test_there_are_command_groups() -> None:
    assert {"gallery", "authorisation", "audit", "report", "roles", "rules"} <= set(groups())


@pytest.mark.parametrize("group", groups())
def test_a_group_without_its_command_is_one_line_naming_command(
    group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([group])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"facestream {group}: error: the following arguments are required: COMMAND (see --help)"
    ]


@pytest.mark.parametrize(
    ("command", "ignored"),
    [
        (["identify", "x.jpg"], "--loop-files"),
        (["identify", "x.jpg"], "--reconnect-max-s=3"),
        (["identify", "x.jpg"], "--episode-ttl-s=60"),
        (["identify", "x.jpg"], "--episodes-data-dir=/tmp/e"),
        (["identify", "x.jpg"], "--stall-timeout-s=5"),
        (["authorisation", "list"], "--enroll-min-score=0.9"),
        (["roles", "grant", "--role", "reviewer", "ann"], "--hnsw-m=8"),
        (["rules", "list"], "--search-ef=64"),
    ],
)
def test_a_command_offers_no_flag_it_would_ignore(
    command: list[str], ignored: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """identify runs no reconnecting cameras nor episode tables, and the state-directory commands
    open no gallery: such a flag is refused in one line instead of parsed and then ignored."""
    with pytest.raises(SystemExit) as exited:
        main([*command, ignored])
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"unrecognized arguments: {ignored}" in line
