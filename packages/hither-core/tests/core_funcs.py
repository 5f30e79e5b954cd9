"""hither functions at module level, shared by the hither-core tests (workers import them
by module name ``core_funcs``)."""
import ctypes
import os
import signal
import sys
import time

import numpy as np

import hither as hi


class CustomError(Exception):
    """An exception class of the tests: comes back with its own type."""


class UnpicklableError(Exception):
    """Needs two constructor arguments: pickle cannot rebuild it from its args."""

    def __init__(self, a, b):
        super().__init__(f"unpicklable error with {a} and {b}")


# ----------------------------------------------------------------- FAQ functions
@hi.function('get_the_answer', '0.1.0')
def get_the_answer():
    return 42


@hi.function('ones', '0.1.0')
def ones(shape):
    return np.ones(shape=shape)


@hi.function('add', '0.1.0')
def add(x, y):
    return x + y


# Define a hither function that squares the input
# and simulates a long computation with a delay
@hi.function('sqr_with_delay', '0.1.0')
def sqr_with_delay(x, delay=None):
    if delay is not None:
        time.sleep(delay)
    return x * x


@hi.function('mult', '0.1.0')
@hi.container('docker://jsoules/simplescipy:latest')
def mult(x, y):
    return x * y


@hi.function('invert', '0.1.0')
@hi.container('docker://jsoules/simplescipy:latest')
def invert(x):
    # You should probably be more careful about types than this in real code
    if isinstance(x, np.ndarray):
        return np.linalg.inv(x)
    return (1/x)


@hi.function('dot', '0.1.0')
@hi.container('docker://jsoules/simplescipy:latest')
def dot(x, y):
    return np.dot(x, y)


# ----------------------------------------------------------------- helpers
def _kind(v):
    """A description of the types inside ``v`` (to see what the function received)."""
    t = type(v)
    if t is list:
        return ["list", [_kind(x) for x in v]]
    if t is tuple:
        return ["tuple", [_kind(x) for x in v]]
    if t is dict:
        return ["dict", {k: _kind(x) for k, x in v.items()}]
    if isinstance(v, np.ndarray):
        return ["ndarray", v.dtype.str, list(v.shape)]
    return [t.__module__ + "." + t.__qualname__]


@hi.function('identity', '0.1.0')
def identity(x):
    return x


@hi.function('kinds', '0.1.0')
def kinds(x):
    return _kind(x)


@hi.function('print_lines', '0.1.0')
def print_lines(tag, n):
    for i in range(n):
        print(f"{tag} line {i} " + "x" * 40)
        if i % 100 == 99:
            time.sleep(0.001)  # the other worker prints meanwhile
    return n


@hi.function('dtypes_seen', '0.1.0')
def dtypes_seen(x):
    """The dtypes (with byte order and fields) of the arrays the function was given, and
    the arrays themselves back."""
    return [str(a.dtype.descr) for a in x], x


@hi.function('sleep_then', '0.1.0')
def sleep_then(t, x=None):
    time.sleep(t)
    return x


@hi.function('pid_of', '0.1.0')
def pid_of(x=None):
    return os.getpid()


@hi.function('pid_then_sleep', '0.1.0')
def pid_then_sleep(path, t):
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(t)
    return os.getpid()


@hi.function('fail_value_error', '0.1.0')
def fail_value_error(msg):
    raise ValueError(msg)


@hi.function('fail_custom', '0.1.0')
def fail_custom(msg):
    raise CustomError(msg)


@hi.function('fail_unpicklable', '0.1.0')
def fail_unpicklable():
    raise UnpicklableError(1, 2)


@hi.function('fail_after', '0.1.0')
def fail_after(t, msg):
    time.sleep(t)
    raise ValueError(msg)


@hi.function('die_exit', '0.1.0')
def die_exit(code):
    os._exit(code)


@hi.function('die_segfault', '0.1.0')
def die_segfault():
    ctypes.string_at(0)


@hi.function('die_sigkill', '0.1.0')
def die_sigkill():
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)


@hi.function('read_path', '0.1.0')
def read_path(path):
    with open(path) as f:
        return [type(path).__name__, f.read()]


@hi.function('read_paths', '0.1.0')
def read_paths(paths):
    out = []
    for p in paths["files"]:
        with open(p) as f:
            out.append([type(p).__name__, f.read()])
    return out


@hi.function('file_obj_kind', '0.1.0')
@hi.opts(no_resolve_input_files=True)
def file_obj_kind(f):
    return [type(f).__module__ + "." + type(f).__qualname__, f.read_text()]


@hi.function('make_file', '0.1.0')
def make_file(dirname, text):
    path = os.path.join(dirname, f"made-{os.getpid()}-{time.time_ns()}.txt")
    with open(path, "w") as fh:
        fh.write(text)
    return hi.File(path)


@hi.function('bad_result', '0.1.0')
def bad_result(kind):
    if kind == "set":
        return {1, 2}
    if kind == "object":
        return object()
    if kind == "nested_set":
        return {"a": [1, {3}]}
    if kind == "lambda":
        return lambda: 1
    if kind == "generator":
        return (i for i in range(3))
    raise AssertionError(kind)


@hi.function('chatty', '0.1.0')
def chatty(out, err, t=0.0):
    print(out)
    print(err, file=sys.stderr)
    time.sleep(t)
    return os.getpid()


@hi.function('plus_one', '0.1.0')
def plus_one(a):
    return a + 1


@hi.function('count_runs', '0.1.0')
def count_runs(path, x):
    with open(path, "a") as f:
        f.write("ran\n")
    return [x, x * 2]


@hi.function('write_relative', '0.1.0')
def write_relative(name, text):
    with open(name, "w") as f:
        f.write(text)
    return os.getcwd()
