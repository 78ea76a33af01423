// Edits the routing document through the web console in headless Chromium (Debian's, through
// playwright-core) for test_console_routing.py: a custom endpoint, a route with a condition,
// a refused condition shown beside its field, an edit, an enrichment, an ETag conflict
// between two tabs, a deletion, the fallback route. At `{"wait": name}` lines the script
// stops until the test answers with one JSON line on standard input. The last line is the
// result object, or {"error": ...}.
//
// Usage: node console_routing.js <base-url>
// Environment: IRONHUB_CONNECTION_STRING (iothubowner), CHROMIUM (default /usr/bin/chromium).
'use strict';

const { ask, launch, run, signIn, submit: post } = require('./console_common');

const [base] = process.argv.slice(2);
const owner = process.env.IRONHUB_CONNECTION_STRING;

/** Submits the form `selector` and returns the status of the page it leads to. */
async function submit(page, selector) {
  return (await post(page, selector)).status();
}

async function notice(page) {
  return (await page.locator('.notice').first().textContent().catch(() => '')) || '';
}

async function main() {
  const { context, page } = await launch({ deadlineMs: 120000 });
  const result = {};

  await signIn(page, base, { connection_string: owner });
  await page.goto(`${base}/console/routes`);

  // A custom endpoint: an event stream of one partition.
  await page.selectOption('#endpoint-kind', 'eventHubs');
  await page.fill('#endpoint-name', 'alerts');
  await page.fill('#endpoint-settings', '{"partitionCount": 1}');
  result.endpointStatus = await submit(page, '#endpoint-form');
  result.endpointNotice = await notice(page);
  result.endpointsTable = await page.textContent('#endpoints');

  // A route with a condition to it.
  await page.fill('#route-name', 'critical');
  await page.selectOption('#route-source', 'DeviceMessages');
  await page.fill('#route-condition', "level = 'critical'");
  await page.fill('#route-endpoints', 'alerts');
  result.routeStatus = await submit(page, '#route-form');
  result.routeNotice = await notice(page);

  // A bad condition: the parser's message beside the field, the draft kept, nothing saved.
  await page.fill('#route-name', 'broken');
  await page.fill('#route-condition', "level = = 'x'");
  await page.fill('#route-endpoints', 'alerts');
  result.badConditionStatus = await submit(page, '#route-form');
  result.badConditionMessage = await page.textContent('#route-condition-error');
  result.badConditionKept = await page.inputValue('#route-condition');
  await ask('bad-condition');

  // Edit the route: it also takes 'high'.
  await page.goto(`${base}/console/routes?edit=critical`);
  result.editPrefilled = await page.inputValue('#route-condition');
  await page.fill('#route-condition', "level = 'critical' OR level = 'high'");
  result.editStatus = await submit(page, '#route-form');
  result.routesTable = await page.textContent('#routes');

  // An enrichment on the endpoint.
  await page.fill('#enrichment-key', 'origin');
  await page.fill('#enrichment-value', 'console');
  await page.fill('#enrichment-endpoints', 'alerts');
  result.enrichmentStatus = await submit(page, '#enrichment-form');

  // Two tabs: the second saves first, so the first one's ETag is stale.
  const stale = await context.newPage();
  stale.on('dialog', (dialog) => dialog.accept());
  await stale.goto(`${base}/console/routes`);
  await page.goto(`${base}/console/routes`);
  await page.fill('#route-name', 'temp');
  await page.fill('#route-condition', "level = 'temp'");
  await page.fill('#route-endpoints', 'alerts');
  result.tempStatus = await submit(page, '#route-form');
  await stale.fill('#route-name', 'late');
  await stale.fill('#route-endpoints', 'events');
  result.conflictStatus = await submit(stale, '#route-form');
  result.conflictNotice = await notice(stale);

  // Delete the temporary route (from the page the conflict left, which is current again).
  const [deleted] = await Promise.all([
    stale.waitForResponse((r) => r.request().method() === 'POST'),
    stale.click('#delete-route-temp'),
  ]);
  await stale.waitForLoadState();
  result.deleteStatus = deleted.status();
  result.routesAfterDelete = await stale.textContent('#routes');

  // The fallback route off and on again.
  await stale.uncheck('#fallback-enabled');
  result.fallbackOffStatus = await submit(stale, '#fallback-form');
  result.fallbackOff = await stale.textContent('#fallback-state');
  await ask('fallback-off');
  await stale.check('#fallback-enabled');
  result.fallbackOnStatus = await submit(stale, '#fallback-form');
  result.fallbackOn = await stale.textContent('#fallback-state');

  await ask('send-telemetry');
  return result;
}

run(main);
