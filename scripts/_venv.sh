# Sourced by scripts/serve and scripts/test: makes .venv and installs the project into it,
# skipping pip when pyproject.toml has not changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
EXTRAS="${1:-}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
STAMP="$VENV/.gbserver-installed$EXTRAS"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  # Quiet but for real errors. The editable install's build backend (setuptools) warns
  # "Editable installation. !! Please be careful with folders..." on every install, and pip
  # shows a local project's backend warnings: that one warning (by its message) is ignored.
  PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
  "${PIP[@]}" --upgrade pip
  PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Editable installation" \
    "${PIP[@]}" -e "$ROOT$EXTRAS"
  echo "$WANT" > "$STAMP"
fi
