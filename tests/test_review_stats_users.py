"""Kappa and interval maths on hand-computed cases; reviewer accounts with hashed passwords."""
import io

import pytest

from medvlm.errors import UserFacingError
from medvlm.stats import cohen_kappa, fleiss_kappa, wilson_interval
from medvlm.store import Store
from review import users


def test_cohen_kappa_hand_computed():
    # 10 items: agree on 4 "correct" + 3 "wrong"; rater A says correct 6 times, B 5 times.
    a = ["correct"] * 4 + ["wrong"] * 3 + ["correct"] * 2 + ["wrong"]
    b = ["correct"] * 4 + ["wrong"] * 3 + ["wrong"] * 2 + ["correct"]
    # po = 0.7; pe = 0.6*0.5 + 0.4*0.5 = 0.5; kappa = 0.2 / 0.5 = 0.4
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["wrong", "correct"], ["wrong", "correct"]) == 1.0
    assert cohen_kappa(["correct", "wrong"], ["wrong", "correct"]) == pytest.approx(-1.0)
    assert cohen_kappa(["correct"] * 3, ["correct"] * 3) == 1.0
    with pytest.raises(ValueError):
        cohen_kappa(["correct"], [])


def test_fleiss_kappa_hand_computed():
    # 4 items x 3 raters. Counts per item (correct, wrong): (3,0) (0,3) (2,1) (1,2).
    ratings = [["correct"] * 3, ["wrong"] * 3, ["correct", "correct", "wrong"], ["correct", "wrong", "wrong"]]
    # P_i = 1, 1, 1/3, 1/3 -> P_bar = 2/3; p_correct = p_wrong = 0.5 -> Pe = 0.5; kappa = (2/3 - 1/2) / (1/2) = 1/3
    assert fleiss_kappa(ratings) == pytest.approx(1 / 3)
    # Two raters: Fleiss reduces to Scott's pi, (0.7 - 0.505) / 0.495 for the Cohen case above
    a = ["correct"] * 4 + ["wrong"] * 3 + ["correct"] * 2 + ["wrong"]
    b = ["correct"] * 4 + ["wrong"] * 3 + ["wrong"] * 2 + ["correct"]
    assert fleiss_kappa([list(pair) for pair in zip(a, b)]) == pytest.approx((0.7 - 0.505) / 0.495)
    with pytest.raises(ValueError):
        fleiss_kappa([["correct", "wrong"], ["correct"]])


def test_wilson_interval_hand_computed():
    low, high = wilson_interval(8, 10)  # textbook: 0.490 .. 0.943
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_passwords_are_hashed_and_checked(tmp_path):
    store = Store(tmp_path / "u.db")
    users.add(store, "dr.ada", "correct horse")
    stored = store.reviewer("dr.ada")["password_hash"]
    assert "correct horse" not in stored and stored.startswith("scrypt$")
    assert users.sign_in(store, "dr.ada", "correct horse")["name"] == "dr.ada"
    for name, password in (("dr.ada", "wrong horse"), ("nobody", "correct horse"), ("", "")):
        with pytest.raises(UserFacingError, match="Unknown reviewer or wrong password"):
            users.sign_in(store, name, password)
    with pytest.raises(UserFacingError, match="already exists"):
        users.add(store, "dr.ada", "another password")
    with pytest.raises(UserFacingError, match="at least 8"):
        users.add(store, "bob", "short")
    with pytest.raises(UserFacingError, match="letters, digits"):
        users.add(store, "bob smith; drop", "long enough")


def test_users_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a misplaced --db would create medvlm.db here
    db = str(tmp_path / "cli.db")
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pass\n"))
    assert users.main(["--db", db, "add", "carol", "--password_stdin"]) == 0
    assert users.main(["list", "--db", db]) == 0  # --db after the command, as the README writes it
    assert "carol" in capsys.readouterr().out
    assert not (tmp_path / "medvlm.db").exists()
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pass\n"))
    assert users.main(["--db", db, "add", "carol", "--password_stdin"]) == 2
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        users.main(["--db", db, "remove", "carol"])
    assert bad.value.code == 2


def test_users_cli_without_a_terminal_says_how(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    monkeypatch.setattr("getpass.getpass", lambda prompt="": input(prompt))  # no terminal: input() meets EOF
    assert users.main(["add", "dave", "--db", str(tmp_path / "u.db")]) == 2
    assert "--password_stdin" in capsys.readouterr().err
