// send.mjs - one analytics SDK, as an application uses it, sending to datapipe's Segment
// tracking API: node send.mjs SDK URL WRITE_KEY COUNT PREFIX [RETRIES [PACE_MS]]
//   SDK: segment (@segment/analytics-node) or rudder (@rudderstack/rudder-sdk-node).
// Message i is call i % 6 (identify, track, page, screen, group, alias) with messageId
// PREFIX-i and fixed values (see tests/e2e/test_segment_sdk.sh). The SDK batches and retries
// by itself; PACE_MS spaces the calls (so a flush can meet a server being killed); this
// waits for its flush and prints "flushed N" or the error. Test code only.
import { Analytics } from '@segment/analytics-node';
import Rudder from '@rudderstack/rudder-sdk-node';

const [sdk, url, writeKey, countText, prefix, retriesText, paceText] = process.argv.slice(2);
const count = Number(countText);
const retries = Number(retriesText ?? 3);
const paceMs = Number(paceText ?? 0);
const when = new Date('2026-03-01T10:00:00.000Z');

function message(i) {
    const m = { messageId: `${prefix}-${i}`, userId: `u-${i % 7}`, timestamp: when,
                context: { app: { name: 'sdk-test' } } };
    switch (i % 6) {
    case 0: return ['identify', { ...m, traits: { plan: 'pro', n: i } }];
    case 1: return ['track', { ...m, event: 'Signed Up', properties: { via: 'ad', n: i } }];
    case 2: return ['page', { ...m, name: 'Home', properties: { path: '/', n: i } }];
    case 3: return ['screen', { ...m, name: 'Cart', properties: { items: 2, n: i } }];
    case 4: return ['group', { ...m, groupId: `g-${i}`, traits: { name: 'Acme' } }];
    default: return ['alias', { ...m, previousId: `a-${i}` }];
    }
}

let failed = 0;
let client;
if (sdk === 'segment') {
    client = new Analytics({ writeKey, host: url, flushAt: 50, flushInterval: 200,
                             maxRetries: retries, httpRequestTimeout: 5000 });
    client.on('error', (err) => { failed++; console.error(`error: ${err.reason ?? err.code}`); });
} else if (sdk === 'rudder') {
    client = new Rudder(writeKey, { dataPlaneUrl: url, flushAt: 50, flushInterval: 200,
                                    retryCount: retries, timeout: 5000, logLevel: 'error',
                                    errorHandler: (err) => { failed++; console.error(`error: ${err}`); } });
} else {
    console.error(`unknown SDK ${sdk}`);
    process.exit(2);
}
for (let i = 0; i < count; i++) {
    const [call, params] = message(i);
    client[call](params);
    if (paceMs > 0) {
        await new Promise((resolve) => setTimeout(resolve, paceMs));
    }
}
if (sdk === 'segment') {
    await client.closeAndFlush({ timeout: 120000 });
} else {
    await client.flush();
}
console.log(`flushed ${count} failed ${failed}`);
process.exit(failed === 0 ? 0 : 1);
