#!/usr/bin/env bash
# Run the whole benchmark suite (see bench/README.md). Extra arguments go to bench/run.py,
# e.g.  bench/run_all.sh --quick   or   bench/run_all.sh --phases ingest --rounds 5
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${VIRTUAL_ENV:-}" && -f "$here/../.venv/bin/activate" ]]; then
  # shellcheck disable=SC1091
  . "$here/../.venv/bin/activate"
fi
exec python "$here/run.py" "$@"
