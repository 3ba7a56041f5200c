#!/usr/bin/env bash
# test_segment_browser.sh - the browser path of the Segment tracking API (docs/api.md, "Sending
# from an analytics SDK") in real headless Chromium (Debian's chromium, installed by make
# deps): a page served from another origin (a static server on another loopback port) loads
# @segment/analytics-next's own browser build from its npm package (tests/tools/sdk, settings
# inline, chunks from that static server: nothing from a CDN) and sends identify, track and
# page through CORS with Content-Type text/plain; sends a track with fetch and text/plain and
# the write key in the body (no preflight); and, as it unloads (its frame removed), a batch with
# navigator.sendBeacon. Every message lands once, with the write key's name as source.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
: "${DP_PG_CONNINFO:?run through make check (tests/pg run)}"

TMP=$(mktemp -d)
SCHEMA=segbrowser_$$
trap 't_cleanup; sql "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"; rm -rf "$TMP"' EXIT
export PGTZ=UTC

# --- analytics-next: npm ci from the lock file, shared with test_segment_sdk.sh
SDIR=$BUILD/sdk
if ! cmp -s tests/tools/sdk/package-lock.json "$SDIR/package-lock.json" ||
    [ ! -d "$SDIR/node_modules/@segment/analytics-next" ]; then
    command -v npm >/dev/null || { echo "npm is missing: run make deps"; exit 1; }
    rm -rf "$SDIR"
    mkdir -p "$SDIR"
    cp tests/tools/sdk/package.json tests/tools/sdk/package-lock.json "$SDIR/"
    (cd "$SDIR" && npm ci --no-audit --no-fund --loglevel=error) ||
        { echo "npm ci of the SDKs failed"; exit 1; }
fi

PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
SPORT=$(free_port)
ORIGIN="http://127.0.0.1:$SPORT"
cat >"$TMP/cfg.json" <<JSON
{"server": {"listen": "127.0.0.1:$PORT", "threads": 8, "cors_origins": ["$ORIGIN"],
            "api_keys": [{"name": "site", "key": "wk-site"}]},
 "queue": {"path": "$TMP/q", "max_bytes": 67108864, "id": "segbrowser_$$", "sync": false},
 "database": {"conninfo": "$DP_PG_CONNINFO", "schema": "$SCHEMA"},
 "loader": {"interval_s": 3600, "min_interval_s": 1}}
JSON
start_bg "$TMP/server.log" "$BIN/datapipe-server" -c "$TMP/cfg.json"
wait_until 20 "the server answers /healthz" http_answers "$URL/healthz" || cat "$TMP/server.log"

# --- the site: the SDK's browser build where its loader looks for it (_cdn), two pages
SITE=$TMP/site
mkdir -p "$SITE/analytics-next/bundles"
cp "$SDIR"/node_modules/@segment/analytics-next/dist/umd/*.js "$SITE/analytics-next/bundles/"
cat >"$SITE/shop.html" <<HTML
<!doctype html>
<html><head><title>shop</title>
<script>window.analytics = { _cdn: '$ORIGIN' };</script>
<script src="/analytics-next/bundles/index.js"></script>
</head><body><p id="out">loading</p>
<script>
const api = '$URL';
const note = (t) => { document.getElementById('out').textContent = t; };
function unloadBeacon() {
    const body = JSON.stringify({ writeKey: 'wk-site', sentAt: new Date().toISOString(),
        batch: [{ type: 'track', anonymousId: 'anon-b', event: 'Left Page',
                  messageId: 'br-beacon', properties: { reason: 'unload' } }] });
    navigator.sendBeacon(api + '/v1/batch', new Blob([body], { type: 'text/plain' }));
}
async function run() {
    const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
        { writeKey: 'wk-site',
          cdnSettings: { integrations: { 'Segment.io': { apiKey: 'wk-site',
              apiHost: '127.0.0.1:$PORT/v1', protocol: 'http' } } } });
    await analytics.identify('u-b', { plan: 'pro' }, { messageId: 'br-identify' });
    await analytics.track('Added To Cart', { sku: 'x-1' }, { messageId: 'br-track' });
    await analytics.page('Shop', 'Home', { path: '/' }, { messageId: 'br-page' });
    const r = await fetch(api + '/v1/track', { method: 'POST',
        headers: { 'Content-Type': 'text/plain' },
        body: JSON.stringify({ writeKey: 'wk-site', userId: 'u-b', event: 'Plain Fetch',
                               messageId: 'br-fetch' }) });
    const answer = await r.json();
    window.addEventListener('pagehide', unloadBeacon);
    parent.postMessage('fetch=' + r.status + ' accepted=' + answer.accepted, '*');
}
run().catch((e) => note('error: ' + e));
</script></body></html>
HTML
# The page a person leaves: shown in a frame that goes away once it has sent its events.
cat >"$SITE/index.html" <<'HTML'
<!doctype html>
<html><body><p id="out">waiting</p>
<script>
const frame = document.createElement('iframe');
window.addEventListener('message', (e) => {
    frame.remove();
    document.getElementById('out').textContent = 'done ' + e.data;
});
frame.src = '/shop.html';
document.body.appendChild(frame);
</script></body></html>
HTML
start_bg "$TMP/site.log" python3 -m http.server --bind 127.0.0.1 --directory "$SITE" "$SPORT"
wait_until 20 "the site answers" http_answers "$ORIGIN/index.html"

profile=$(mktemp -d "$TMP/chrome.XXXXXX")
timeout 180 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --virtual-time-budget=15000 --dump-dom "$ORIGIN/index.html" \
    >"$TMP/dom.html" 2>>"$TMP/chrome.log"
has "the page sent everything and went: the plain fetch was answered 200, accepted 1" \
    '<p id="out">done fetch=200 accepted=1</p>' "$(cat "$TMP/dom.html")"

# The beacon is sent as the page goes: give the server a moment to have it.
# Six events: identify (and its users row), the SDK's track and page, the fetch, the beacon.
beacon_in() { "$BUILD/tests/tools/qtool" "$TMP/q" stats | grep -q '^events=6 '; }
wait_until 20 "the beacon reached the queue" beacon_in
r=$(curl -s -X OPTIONS -H "Origin: $ORIGIN" -H 'Access-Control-Request-Method: POST' \
    -H 'Access-Control-Request-Headers: authorization, content-type, x-retry-count' -D - \
    -o /dev/null "$URL/v1/t" | tr -d '\r')
has "the preflight analytics.js makes allows its origin" "Access-Control-Allow-Origin: $ORIGIN" "$r"
has "and the headers it sends, its retries' too" \
    "Access-Control-Allow-Headers: Content-Type, Content-Encoding, Authorization, X-API-Key, Idempotency-Key, ce-specversion, ce-id, ce-source, ce-type, X-Retry-Count" "$r"
ok "the loader loads" timeout 120 "$BIN/datapipe-loader" -c "$TMP/cfg.json" --once
q() { sql "SELECT $2 FROM $SCHEMA.$1 $3"; }
eq "analytics.js identify: one row" 'br-identify|u-b|{"plan": "pro"}|site|t' \
    "$(q identifies "message_id, user_id, traits::text, source, anonymous_id IS NOT NULL" "")"
eq "analytics.js track and the plain fetch's and the beacon's: one row each" \
    'br-beacon|Left Page|{"reason": "unload"}|site
br-fetch|Plain Fetch|-|site
br-track|Added To Cart|{"sku": "x-1"}|site' \
    "$(q tracks "message_id, event, coalesce(properties::text, '-'), source" "ORDER BY message_id")"
eq "analytics.js page: one row, its context from the browser" "br-page|Home|/|site|t" \
    "$(q pages "message_id, name, properties->>'path', source, context->'page'->>'url' LIKE '$ORIGIN/%'" "")"
eq "users: the identified user" 'u-b|{"plan": "pro"}' "$(q users "user_id, traits::text" "")"
eq "nothing dead-lettered" "0" "$(q dead_letter "count(*)" "")"

t_done test_segment_browser
