"""``hither.plugins.lifetime``: at interpreter exit live handlers are shut down first, then the
closers run (warm containers), whatever the order they were registered in; a dropped
handler is not kept alive; one failing shutdown does not stop the others."""
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(60)

PROGRAM = textwrap.dedent("""
    import gc
    from hither.plugins.lifetime import close_at_exit, shut_down_at_exit

    class Handler:
        def __init__(self, name, fail=False):
            self.name, self.fail = name, fail
        def shutdown(self, wait=True):
            print("shutdown", self.name, wait, flush=True)
            if self.fail:
                raise RuntimeError("boom")

    close_at_exit(lambda: print("closer", flush=True))   # registered before any handler
    kept = [Handler("a", fail=True), Handler("b")]
    for h in kept:
        shut_down_at_exit(h)
    dropped = Handler("dropped")
    shut_down_at_exit(dropped)
    del dropped
    gc.collect()
    print("exiting", flush=True)
""")


def test_handlers_shut_down_at_exit_before_the_closers():
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "exiting"
    assert sorted(lines[1:3]) == ["shutdown a False", "shutdown b False"]  # both, though a failed
    assert lines[3:] == ["closer"]
    assert "could not shut down" in out.stderr and "boom" in out.stderr
