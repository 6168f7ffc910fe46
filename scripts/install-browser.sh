#!/bin/sh
# Headless Chromium and its WebDriver for the portal's browser test (tests/test_opendata_portal_browser.py).
# Debian's packages, so nothing is downloaded at test time (Selenium Manager stays off). Called by `make`'s
# install step; without apt-get or root it only explains, and the test skips (it fails only with CI=true).
set -eu

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: 没有 apt-get，请自行安装 chromium 与 chromedriver no apt-get: install chromium and chromedriver yourself" >&2
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install-browser: 需要 root：sudo apt-get install -y chromium chromium-driver (browser test skips until then)" >&2
    exit 0
fi
echo "install-browser: apt-get install chromium chromium-driver" >&2
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver
