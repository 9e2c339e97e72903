"""Sign-in time for a known name with a wrong password versus an unknown name, side by side in one run: a ratio near 1
means timing tells no one which reviewer names exist. Then the brake: how many of 200 rapid guesses were checked.

    python bench/signin.py                  # 50 attempts each, interleaved, a fresh database in /tmp
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medvlm import cli
from medvlm.errors import UserFacingError
from medvlm.store import Store
from review import users


def main(argv=None) -> int:
    parser = cli.Parser("python bench/signin.py", __doc__)
    parser.add_argument("--attempts", type=int, default=50)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "signin.db")
        users.add(store, "dr.ada", "correct horse")
        timings = {"known name": [], "unknown name": []}
        for _ in range(args.attempts):  # interleaved, so drift on a noisy machine hits both alike
            for label, name in (("known name", "dr.ada"), ("unknown name", "dr.nobody")):
                start = time.perf_counter()
                try:
                    users.sign_in(store, name, "wrong password")
                except UserFacingError:
                    pass
                timings[label].append(time.perf_counter() - start)
        known, unknown = (statistics.median(timings[k]) * 1000 for k in ("known name", "unknown name"))
        print(f"median sign-in: known name {known:.1f} ms, unknown name {unknown:.1f} ms, ratio {unknown / known:.2f}")

        auth = users.Authenticator(store)
        start = time.perf_counter()
        for _ in range(200):
            auth.check("dr.ada", "guess", "10.0.0.1")
        checked = auth.brake.failures["name:dr.ada"]  # a failure is counted only when the password was checked
        print(f"200 rapid wrong guesses at one name from one client in {time.perf_counter() - start:.1f} s: {checked} "
              f"checked, {200 - checked} refused unchecked while locked")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
