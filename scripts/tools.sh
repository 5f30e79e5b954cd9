# Sourced by scripts/demo.sh and scripts/test.sh: puts `hatch` on PATH without touching the
# system Python (PEP 668 "externally managed" Pythons refuse `pip install`). Uses a hatch
# already on PATH, else installs hatch into its own virtual environment under
# ${HITHER_TOOLS_DIR:-~/.cache/hither/tools} (made once, reused).
hither_tools_dir=${HITHER_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/hither/tools}
if ! command -v hatch >/dev/null 2>&1; then
  if [ ! -x "$hither_tools_dir/bin/hatch" ]; then
    py=$(command -v python3 || true)
    if [ -z "$py" ]; then
      echo "hither: python3 (>= 3.10) is needed; install it (Debian/Ubuntu: apt install python3 python3-venv)" >&2
      exit 1
    fi
    echo "[tools] installing hatch into $hither_tools_dir (a virtual environment of its own)" >&2
    if ! "$py" -m venv "$hither_tools_dir" >/dev/null 2>&1; then
      # Debian/Ubuntu without python3-venv: no ensurepip; make the environment without pip
      # and let the system's pip install into it (allowed: the target is not externally managed)
      rm -rf "$hither_tools_dir"
      if ! "$py" -m venv --without-pip "$hither_tools_dir" || ! "$py" -m pip --version >/dev/null 2>&1; then
        echo "hither: cannot make a virtual environment with $py; install python3-venv" \
             "(Debian/Ubuntu: apt install python3-venv) or put hatch on PATH (pipx install hatch)" >&2
        exit 1
      fi
      "$py" -m pip --python "$hither_tools_dir/bin/python" install -q "hatch>=1.16"
    else
      "$hither_tools_dir/bin/python" -m pip install -q "hatch>=1.16"
    fi
  fi
  export PATH="$hither_tools_dir/bin:$PATH"
fi
