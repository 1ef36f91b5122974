#!/bin/sh
# Headless Chromium for tests/test_live_page_browser.py: Debian's chromium and
# chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver), installed with
# apt-get when they are missing and this runs as root (as CI does). Anywhere
# else it says why it installs nothing and exits 0: the browser tests are then
# skipped, with that reason. AGENTSTREAM_NO_BROWSER_INSTALL=1 opts out.
# Measured on the 2-core machine: about 13 s (112 MB downloaded, 422 MB installed).
set -u

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
skip() {
    echo "install_chromium: $1; the browser tests will be skipped"
    exit 0
}
[ "${AGENTSTREAM_NO_BROWSER_INSTALL:-}" = "1" ] && skip "AGENTSTREAM_NO_BROWSER_INSTALL=1"
[ "$(id -u)" = "0" ] || skip "not root, so not installing Debian's chromium and chromium-driver"
command -v apt-get >/dev/null 2>&1 || skip "no apt-get here to install chromium with"

echo "install_chromium: installing Debian's chromium and chromium-driver (about 15 s, once)"
log=$(mktemp)
start=$(date +%s)
install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        chromium chromium-driver >"$log" 2>&1
}
# Package lists that are missing or out of date make the install fail: update
# them once and try again.
if ! install && ! { apt-get update -q >>"$log" 2>&1 && install; }; then
    tail -n 5 "$log"
    rm -f "$log"
    skip "apt-get could not install chromium (its last lines are above)"
fi
rm -f "$log"
echo "install_chromium: done in $(($(date +%s) - start)) s: $(/usr/bin/chromium --version 2>/dev/null)"
