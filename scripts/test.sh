#!/usr/bin/env bash
# Install what the tests need and run them all. Arguments go to pytest.
#
# Browser tests drive Debian's chromium through Playwright; this script installs
# the package when it is missing (as root, or through sudo). It never runs
# `playwright install`.
set -euo pipefail
cd "$(dirname "$0")/.."

export GRADIO_ANALYTICS_ENABLED=False

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
fi

python -m pip install -q -r requirements-dev.txt
python -m pytest "$@"
