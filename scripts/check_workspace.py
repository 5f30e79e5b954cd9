"""Fail if a hither-* distribution in this environment is not the editable copy from
packages/ (e.g. one pulled from the package index), or a package folder is not installed."""
import json
import os
import sys
from importlib import metadata

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
expected = {name for name in os.listdir(os.path.join(root, "packages"))
            if os.path.exists(os.path.join(root, "packages", name, "pyproject.toml"))}
problems = []
seen = set()
for dist in metadata.distributions():
    name = (dist.metadata["Name"] or "").lower()
    if not name.startswith("hither-"):
        continue
    seen.add(name)
    info = json.loads(dist.read_text("direct_url.json") or "{}")
    url = info.get("url", "")
    want = "file://" + os.path.join(root, "packages", name)
    if not (info.get("dir_info", {}).get("editable") and url.rstrip("/") == want):
        problems.append(f"{name} is installed from {url or 'the package index'}, not editable from {want}")
for name in sorted(expected - seen):
    problems.append(f"packages/{name} is not installed in this environment (hatch env prune)")
if problems:
    print("workspace check failed:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"workspace check: {', '.join(sorted(seen))} installed editable from packages/")
