"""hither functions of the File-semantics tests (module level, so that ParallelJobHandler
workers and job-directory runners can import them)."""
import os

import hither as hi


@hi.function('ff_write_in_tempdir', '0.1.0')
def ff_write_in_tempdir(text):
    # the common pattern: the File is made and returned inside the block that deletes it
    with hi.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'out.txt')
        with open(path, 'w') as fh:
            fh.write(text)
        return hi.File(path)


@hi.function('ff_write_in_tempdir_box', '0.1.0')
@hi.container('hostpython://any-image')
def ff_write_in_tempdir_box(text):
    with hi.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'out.txt')
        with open(path, 'w') as fh:
            fh.write(text)
        return {'file': hi.File(path), 'pid': os.getpid()}


@hi.function('ff_read', '0.1.0')
def ff_read(path):
    with open(path) as fh:
        return fh.read()


@hi.function('ff_read_again', '0.1.0')
def ff_read_again(path):
    with open(path) as fh:
        return fh.read()


@hi.function('ff_identity', '0.1.0')
@hi.opts(no_resolve_input_files=True)
def ff_identity(f):
    # what the worker sees of a File it was sent: its identity and content
    with open(f) as fh:
        return [type(f).__name__, f.uri, f.path, fh.read(), os.getpid()]


class _Shifty:
    """A result whose type check itself raises (not a TypeError): checking it fails."""

    @property
    def __class__(self):
        raise RuntimeError("cannot look at me")


@hi.function('ff_bad_result', '0.1.0')
def ff_bad_result():
    return {'x': _Shifty()}


@hi.function('ff_pid', '0.1.0')
def ff_pid():
    return os.getpid()
