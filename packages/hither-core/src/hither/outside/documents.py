"""Moving a job directory between machines through a content store.

A job directory (see ``hither.outside.jobdir``) is local files. To cross to a machine that does
not share the file system (a compute resource, a cluster node), ``pack_job`` turns it into
one JSON-able document: the spec and arguments inline (a script's globals in the spec too), arrays of at least
``inline_max_bytes`` and every input file as ``sha1://`` URIs in the store, small arrays
inline (base64 ``.npy``), the code bundle in the store. ``unpack_job`` rebuilds the
directory on the other side (verifying content through the store), and ``pack_outputs`` /
``unpack_outputs`` carry the outcome back the same way. The runner only ever sees local files.

    doc = pack_job(job_dir, store)          # here
    unpack_job(doc, other_dir, store)       # there; run ``runner.py other_dir``
    back = pack_outputs(other_dir, store)   # there
    outcome = unpack_outputs(back, scratch_dir, store)   # here
"""
from __future__ import annotations

import base64
import json
import os
from typing import TYPE_CHECKING, Any, Dict, Optional

from hither.content.folder import clone_or_copy
from hither.plugins.interfaces import Store
from hither.values.refs import walk_encoded
from hither.outside.jobdir import read_job_outputs
from hither.runtime import ERROR, RESULT, RUNNER, RUNTIME, write_json_atomic, write_runner

if TYPE_CHECKING:  # pragma: no cover
    from hither.values.outcome import Outcome

#: arrays below this many bytes travel inside the document (configurable per call and by
#: ``$HITHER_INLINE_MAX_BYTES``)
INLINE_MAX_BYTES = int(os.environ.get("HITHER_INLINE_MAX_BYTES", 256 * 1024))


def _place(src: str, dest: str) -> None:
    """Put a store blob's content at ``dest`` in a job directory: a copy-on-write clone
    where the file system can, else a copy. Never a hard link: a job may write to its input
    file in place (as root, a read-only blob does not stop it), which must not change the
    store's content."""
    if not os.path.exists(dest):
        clone_or_copy(src, dest)


def _pack_value(data: Any, job_dir: str, store: Store, inline_max: int) -> Any:
    def pack(node: Dict[str, Any]) -> Dict[str, Any]:
        if node.get("ref") is None and (node.get("uri") or node.get("inline") is not None) \
                and node["_hither"] == "ndarray":
            return node  # already packed: part of a result that stays in the store
        if node["_hither"] == "ndarray":
            path = os.path.join(job_dir, node["ref"])
            if os.path.getsize(path) < inline_max:
                with open(path, "rb") as f:
                    return {**node, "ref": None, "inline": base64.b64encode(f.read()).decode()}
            return {**node, "ref": None, "uri": store.put_file(path, name=os.path.basename(path))}
        local = node.get("local")
        src = os.path.join(job_dir, local) if local else node.get("path")
        uri = store.put_file(src, name=os.path.basename(src)) if src and os.path.exists(src) else node["uri"]
        return {"_hither": "file", "uri": uri, "path": node.get("path")}

    return walk_encoded(data, pack)


def _unpack_value(data: Any, job_dir: str, store: Store, prefix: str, arrays_in_place: bool = False) -> Any:
    counter = [0]

    def unpack(node: Dict[str, Any]) -> Dict[str, Any]:
        if node.get("ref") or node.get("local"):
            return node  # already a file of this job directory
        if node["_hither"] == "ndarray" and arrays_in_place and node.get("uri"):
            # the runner maps arrays copy-on-write (np.load mmap_mode="c"): the job reads the
            # blob itself, only the pages it touches, and cannot change it
            return {"_hither": "ndarray", "ref": store.get_path(node["uri"])}
        if node["_hither"] == "ndarray":
            counter[0] += 1
            rel = f"arrays/{prefix}-{counter[0]}.npy"
            dest = os.path.join(job_dir, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if node.get("inline") is not None:
                with open(dest, "wb") as f:
                    f.write(base64.b64decode(node["inline"]))
            else:
                _place(store.get_path(node["uri"]), dest)
            return {"_hither": "ndarray", "ref": rel}
        digest, _, name = node["uri"][len("sha1://"):].partition("/")
        rel = f"files/{digest}/{name}"
        _place(store.get_path(node["uri"]), os.path.join(job_dir, rel))
        return {**node, "local": rel}

    return walk_encoded(data, unpack)


def pack_job(job_dir: str, store: Store, inline_max_bytes: Optional[int] = None,
             code_uri: Optional[str] = None) -> Dict[str, Any]:
    """The job in ``job_dir`` as a JSON-able document; large content goes to ``store``.
    ``code_uri``: the code bundle already in ``store`` (else its ``code.zip`` is put)."""
    limit = INLINE_MAX_BYTES if inline_max_bytes is None else inline_max_bytes
    with open(os.path.join(job_dir, "spec.json")) as f:
        spec = json.load(f)
    with open(os.path.join(job_dir, "args.json")) as f:
        args = json.load(f)
    if spec.get("script_globals"):  # arrays of a script's globals travel as the arguments' do
        spec["script_globals"] = _pack_value(spec["script_globals"], job_dir, store, limit)
    return {"spec": spec, "args": _pack_value(args, job_dir, store, limit),
            "code": code_uri or store.put_file(os.path.join(job_dir, "code.zip"), name="code.zip")}


def unpack_job(doc: Dict[str, Any], job_dir: str, store: Store, runner: bool = True) -> None:
    """Rebuild a runnable job directory from a ``pack_job`` document (without ``runner.py``
    unless ``runner``: for a launcher whose processes hold the runtime, see
    ``Launcher.needs_runner_file``)."""
    os.makedirs(job_dir, exist_ok=True)
    spec = doc["spec"]
    if spec.get("script_globals"):
        spec = dict(spec, script_globals=_unpack_value(spec["script_globals"], job_dir, store, "global"))
    with open(os.path.join(job_dir, "spec.json"), "w") as f:
        json.dump(spec, f)
    with open(os.path.join(job_dir, "args.json"), "w") as f:
        json.dump(_unpack_value(doc["args"], job_dir, store, "arg"), f)
    _place(store.get_path(doc["code"]), os.path.join(job_dir, "code.zip"))
    if runner:
        write_runner(os.path.join(job_dir, RUNNER))


def pack_outputs(job_dir: str, store: Store, inline_max_bytes: Optional[int] = None) -> Dict[str, Any]:
    """The outcome a runner wrote in ``job_dir`` as a JSON-able document."""
    limit = INLINE_MAX_BYTES if inline_max_bytes is None else inline_max_bytes
    doc: Dict[str, Any] = {}
    for key, name in (("runtime", RUNTIME), ("error", ERROR), ("result", RESULT)):
        path = os.path.join(job_dir, name)
        if os.path.exists(path):
            with open(path) as f:
                doc[key] = json.load(f)
    if "result" in doc:
        doc["result"] = {"value": _pack_value(doc["result"]["value"], job_dir, store, limit)}
    return doc


#: the packed outcome (``pack_outputs``) a pilot leaves beside the runner's own files
OUTPUTS = "outputs.json"


def place_stored_inputs(job_dir: str, store: Store, arrays_in_place: bool = False) -> bool:
    """Give a job directory the arguments it holds by reference (a ``StoredResult`` of an
    earlier job, written as store URIs): each is placed from ``store`` (a clone where the
    file system can, else a copy) and ``args.json`` is rewritten to point at it. With
    ``arrays_in_place`` (a job that runs on the host, where the store's files are seen) an
    array is not copied: ``args.json`` names the stored blob, which the runner maps
    copy-on-write. Run where the job runs, so the data never passes the client. True if
    any argument was placed."""
    path = os.path.join(job_dir, "args.json")
    with open(path) as f:
        args = json.load(f)
    placed = _unpack_value(args, job_dir, store, "stored", arrays_in_place)
    if placed == args:
        return False
    write_json_atomic(path, placed, fsync=False)
    return True


def store_outputs(job_dir: str, store: Store, inline_max_bytes: Optional[int] = None) -> bool:
    """Where a job ran: put a successful result's large arrays and files into ``store``
    and write the packed outcome as ``OUTPUTS`` in ``job_dir`` (the reading side then
    takes it as a ``StoredResult``, see ``hither.outside.path.document_outcome``). A failed
    run's outputs stay as the runner wrote them. True if ``OUTPUTS`` was written."""
    if not os.path.exists(os.path.join(job_dir, RESULT)) or os.path.exists(os.path.join(job_dir, ERROR)):
        return False
    doc = pack_outputs(job_dir, store, inline_max_bytes)
    write_json_atomic(os.path.join(job_dir, OUTPUTS), doc, fsync=False)
    return True


class _HasData(Exception):
    """An array or a file in a result: ``outputs_in_memory`` leaves it to ``unpack_outputs``."""


def _no_data(_node: Any) -> Any:
    raise _HasData()


def outputs_in_memory(doc: Dict[str, Any]) -> "Optional[Outcome]":
    """The ``Outcome`` of a ``pack_outputs`` document of a successful run whose result holds
    no arrays or files, as ``unpack_outputs`` would give it, without a scratch folder; None
    for any other (an error, arrays, files, a result that does not decode: the scratch
    folder's path gives those their usual outcome and message)."""
    from hither.runtime import decode_value
    from hither.values.outcome import finished

    result = doc.get("result")
    if "error" in doc or not isinstance(result, dict) or not isinstance(doc.get("runtime", {}), dict):
        return None
    try:
        # through JSON as the files would go (tuples become lists, keys strings)
        value = decode_value(json.loads(json.dumps(result["value"])), _no_data, _no_data)
        runtime = json.loads(json.dumps(doc["runtime"])) if "runtime" in doc else {}
    except Exception:  # noqa: BLE001 - _HasData, or anything the scratch path reports itself
        return None
    return finished(value, runtime)


def unpack_outputs(doc: Dict[str, Any], scratch_dir: str, store: Store) -> Outcome:
    """The ``Outcome`` of a ``pack_outputs`` document; arrays and files are fetched (and
    verified) through the store into ``scratch_dir`` first."""
    os.makedirs(scratch_dir, exist_ok=True)
    for key, name in (("runtime", RUNTIME), ("error", ERROR)):
        if key in doc:
            with open(os.path.join(scratch_dir, name), "w") as f:
                json.dump(doc[key], f)
    if "result" in doc:
        value = _unpack_value(doc["result"]["value"], scratch_dir, store, "result")
        with open(os.path.join(scratch_dir, RESULT), "w") as f:
            json.dump({"value": value}, f)
    return read_job_outputs(scratch_dir)
