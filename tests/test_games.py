"""The game table against the installed OCAtari, and its lookups."""

import importlib

import pytest

from spacemoc.games import GAMES, check_split, get_game


@pytest.mark.parametrize("name", sorted(GAMES))
def test_labels_match_installed_ocatari(name):
    game = GAMES[name]
    ram = importlib.import_module(f"ocatari.ram.{name}")
    hud = set(ram.MAX_NB_OBJECTS_HUD) - {"NoObject"}  # placeholders are never ground truth
    moving = set(ram.MAX_NB_OBJECTS) - {"NoObject"}
    assert game.labels == ("no_label", *sorted(hud))
    assert set(game.relevant) == moving
    assert game.env_id == f"ALE/{game.env_id.split('/')[1].split('-')[0]}-v5"


@pytest.mark.parametrize("name", sorted(GAMES))
def test_relevant_area_is_a_box(name):
    lo_x, lo_y, hi_x, hi_y = GAMES[name].relevant_area
    assert -0.05 <= lo_x < hi_x <= 1.10
    assert -0.05 <= lo_y < hi_y <= 1.10


@pytest.mark.parametrize("name", sorted(GAMES))
def test_background_looks_are_valid(name):
    from spacemoc.data.background import LOOKS_PER

    game = GAMES[name]
    assert game.background_looks >= 1 and game.background_looks_per in LOOKS_PER


def test_measured_areas_replace_the_whole_frame_placeholder():
    whole = (-0.05, -0.05, 1.05, 1.05)
    for name in ("spaceinvaders", "mspacman", "carnival", "riverraid"):
        assert GAMES[name].relevant_area != whole
    # MsPacman: the maze is relevant, the lives and score strip at the bottom is not.
    pac = get_game("mspacman")
    assert pac.in_relevant_area(0.5, 0.5, 0.55, 0.55)
    assert not pac.in_relevant_area(0.1, 0.88, 0.2, 0.95)


def test_get_game_normalises_and_rejects():
    assert get_game("ALE/Pong-v5").name == "pong"
    assert get_game("Space_Invaders").name == "spaceinvaders"
    with pytest.raises(ValueError, match="unknown game 'pacman'.*mspacman.*pong"):
        get_game("pacman")


def test_check_split_names_valid_splits():
    with pytest.raises(ValueError, match="valid splits: train, validation, test"):
        check_split("val")


def test_the_config_schema_lists_exactly_the_game_table():
    """The schema's `games` enum is written out (a JSON schema cannot import GAMES): it must be
    the game table, in the table's order, so neither can gain or lose a game alone."""
    from spacemoc.config import schema_property

    assert schema_property("games")["items"]["enum"] == list(GAMES)


# Per-game facts live in these tables; everywhere else a game is a row of the table, never a name.
GAME_TABLES = {"games.py", "published.py"}


def _game_name_literals(path, names):
    import ast

    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        f"{path}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and node.value.strip().lower() in names
    ]


def test_no_game_name_special_cases_in_the_library_or_the_workflow():
    """A game's settings go in the game table (or the config), never in a code path that tests
    its name: no string literal equal to a game's name outside the tables."""
    import re
    from pathlib import Path

    import spacemoc

    names = set(GAMES) | {g.env_id.split("/")[1].split("-")[0].lower() for g in GAMES.values()}
    library = Path(spacemoc.__file__).parent
    found = [
        hit
        for path in sorted(library.rglob("*.py"))
        if path.name not in GAME_TABLES or path.parent != library
        for hit in _game_name_literals(path, names)
    ]
    workflow = Path(__file__).resolve().parents[1] / "workflow"
    if workflow.is_dir():
        quoted = re.compile(r"[\"'](" + "|".join(sorted(names)) + r")[\"']", re.IGNORECASE)
        found += [
            f"{path}:{n}: {line.strip()}"
            for path in sorted([*workflow.rglob("*.py"), *workflow.rglob("*.smk")])
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if quoted.search(line)
        ]
    assert not found, "game names in code paths:\n" + "\n".join(found)


def test_reference_labels_keep_the_reference_placeholder_where_it_had_one():
    seaquest = get_game("seaquest")
    assert seaquest.reference_labels == (seaquest.labels[0], "NoObject", *seaquest.labels[1:])
    assert get_game("pong").reference_labels == get_game("pong").labels
