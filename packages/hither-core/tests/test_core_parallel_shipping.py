"""ParallelJobHandler: a function reaches each worker once per code identity, not with
every job (issue 19's throughput: a by-value function's pickle, a module function's
names), and a worker keeps what it was sent even when the job that brought it was
cancelled."""
import time

import hither as hi
from core_funcs import add
from hither.local import messages as P


def _spy_refs(monkeypatch):
    """The kinds of function reference ("val", "id", "ref") of every RunJob the handler
    sends, in order (the real channel still sends them)."""
    kinds = []
    send_many = P.Channel.send_many

    def spy(self, msgs):
        msgs = list(msgs)
        kinds.extend(m.function_ref[0] for m in msgs if type(m) is P.RunJob)
        return send_many(self, msgs)

    monkeypatch.setattr(P.Channel, "send_many", spy)
    return kinds


def test_a_by_value_function_is_sent_to_each_worker_once_per_identity(make_pjh, monkeypatch):
    k = 2

    @hi.function("ship_once", "0.1.0")
    def ship_once(x):
        return x * k

    ph = make_pjh(2)
    kinds = _spy_refs(monkeypatch)
    with hi.Config(job_handler=ph):
        jobs = [ship_once.run(x=i) for i in range(40)]
        assert [j.wait(30) for j in jobs] == [2 * i for i in range(40)]
        k = 3  # a closure cell changed: a new identity, sent again
        jobs = [ship_once.run(x=i) for i in range(40)]
        assert [j.wait(30) for j in jobs] == [3 * i for i in range(40)]
    assert len(kinds) == 80
    # at most once per worker (2) and identity (2); the code before sent it with every job
    assert kinds.count("val") <= 4, kinds
    assert kinds.count("id") == 80 - kinds.count("val")


def test_a_worker_keeps_a_function_whose_job_was_cancelled_before_it_started(make_pjh, monkeypatch):
    @hi.function("ship_sleep", "0.1.0")
    def ship_sleep(s):
        time.sleep(s)
        return s

    @hi.function("ship_plus", "0.1.0")
    def ship_plus(x):
        return x + 1

    ph = make_pjh(1)
    kinds = _spy_refs(monkeypatch)
    with hi.Config(job_handler=ph):
        first = ship_sleep.run(s=1.5)  # the one worker runs this meanwhile
        skipped = ship_plus.run(x=1)  # handed to the busy worker ahead, with the function
        assert skipped.cancel()
        later = ship_plus.run(x=2)  # names the function by its identity only
        assert later.wait(30) == 3
        assert first.wait(30) == 1.5
    assert kinds == ["val", "val", "id"]


def test_a_module_function_is_named_in_full_once_per_worker(make_pjh, monkeypatch):
    ph = make_pjh(2)
    kinds = _spy_refs(monkeypatch)
    with hi.Config(job_handler=ph):
        jobs = [add.run(x=i, y=1) for i in range(30)]
        assert [j.wait(30) for j in jobs] == [i + 1 for i in range(30)]
    assert len(kinds) == 30 and kinds.count("ref") <= 2, kinds
