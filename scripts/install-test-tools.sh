#!/bin/sh
# System tools the test suite drives, from Debian's packages (nothing is downloaded at test time):
# - headless Chromium and its WebDriver for the browser tests (tests/test_opendata_portal_browser.py,
#   tests/test_exchange_browser.py; Selenium Manager stays off);
# - wrk, the HTTP load generator of the exchange benchmark and its smoke test (tests/test_exchange_bench_smoke.py).
# Called by `make`'s install step; without apt-get or root it only explains, and those tests skip (they fail only
# with CI=true).
set -eu

missing=""
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || missing="chromium chromium-driver"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
if [ -z "$missing" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-tools: 没有 apt-get，请自行安装 no apt-get: install yourself:$missing" >&2
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install-test-tools: 需要 root：sudo apt-get install -y$missing (the tests needing them skip until then)" >&2
    exit 0
fi
echo "install-test-tools: apt-get install$missing" >&2
apt-get update -q
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
