"""The job runtime: what runs a job outside the calling process (a job directory, the job
server, a worker), and the pieces of it the rest of hither shares. Stdlib-only, Python >= 3.8;
imports nothing else of hither. This module is its public face: the rest of hither imports
only the names below, never a submodule. Into a job directory it ships as one file,
``runner.py`` (``write_runner``: a zip of these modules, see ``shipping``); ``python -m
hither.runtime JOB_DIR`` (or ``--serve ...``) runs the same program from the installed package.
"""
from .calling import call_function
from .cli import main
from .errors import JobExitError, error_dict, pickle_exception, rebuild_exception
from .grammar import KIND_BY_CLASS, NDARRAY, Visitor, WireVisitor, format_path, kind_of
from .hashing import CHUNK, copy_file_hashing, copy_hashing, sha1_of_buffers, sha1_of_bytes, sha1_of_fd
from .jobdir import ERROR, RESULT, RUNNER, RUNTIME, write_json_atomic
from .processes import become_subreaper, kill_leftovers
from .shipping import runner_bytes, write_runner
from .wire import decode_value, encode_value

__all__ = [
    "CHUNK", "ERROR", "KIND_BY_CLASS", "NDARRAY", "RESULT", "RUNNER", "RUNTIME", "JobExitError", "Visitor",
    "WireVisitor", "become_subreaper", "call_function", "copy_file_hashing", "copy_hashing", "decode_value",
    "encode_value", "error_dict", "pickle_exception", "rebuild_exception", "format_path", "kind_of", "kill_leftovers", "main", "runner_bytes",
    "sha1_of_buffers", "sha1_of_bytes", "sha1_of_fd", "write_json_atomic", "write_runner",
]
