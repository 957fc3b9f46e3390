#!/usr/bin/env bash
# Prints the path of a working Python 3.10 interpreter, or one line saying what to install.
# `python3.10` on PATH may be a pyenv shim that only works with PYENV_VERSION set, so each
# candidate is run before it is trusted.
works() { "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }
candidates=()
command -v python3.10 >/dev/null 2>&1 && candidates+=("$(command -v python3.10)")
if command -v pyenv >/dev/null 2>&1; then
  for p in "$(pyenv root)"/versions/3.10*/bin/python3.10; do candidates+=("$p"); done
fi
for p in "$HOME"/.pyenv/versions/3.10*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do
  candidates+=("$p")
done
for p in "${candidates[@]}"; do
  if [ -x "$p" ] && works "$p"; then echo "$p"; exit 0; fi
done
echo "No Python 3.10 found: install Python 3.10 (e.g. 'pyenv install 3.10.13' or your package manager's python3.10 with venv) and rerun." >&2
exit 1
