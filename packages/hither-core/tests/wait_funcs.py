"""Jobs that call ``hi.wait()`` themselves (test_core_wait_in_job), importable by workers."""
import hither as hi


@hi.function('waits_inside', '0.1.0')
def waits_inside(x):
    hi.wait(timeout=30)
    return x + 1


@hi.function('wait_plus_one', '0.1.0')
def wait_plus_one(x):
    return x + 1


@hi.function('starts_and_waits', '0.1.0')
def starts_and_waits(x):
    """Starts a job of its own (on the DefaultJobHandler of the process it runs in), waits."""
    with hi.Config(job_handler=hi.DefaultJobHandler()):
        inner = wait_plus_one.run(x=x)
    hi.wait(timeout=30)
    return inner.get_result() * 10
