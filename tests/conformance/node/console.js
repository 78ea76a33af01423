// Drives the web console in headless Chromium (Debian's, through playwright-core) for
// test_console.py. The device side is the Python test's: at each `{"wait": name, ...}` line
// this prints, the script stops until the test answers with one JSON line on standard input.
// The last line is the result object, or {"error": ...}.
//
// Usage: node console.js <base-url> <artefact-dir>
// Environment: IRONHUB_CONNECTION_STRING (iothubowner), IRONHUB_READ_CONNECTION_STRING
// (registryRead), CHROMIUM (default /usr/bin/chromium).
'use strict';

const { ask, launch, run, signIn, shots } = require('./console_common');

const [base, artefacts] = process.argv.slice(2);
const owner = process.env.IRONHUB_CONNECTION_STRING;
const reader = process.env.IRONHUB_READ_CONNECTION_STRING;

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

async function main() {
  const { context, page } = await launch();
  const result = {};

  // Without a session every page leads to the sign-in form.
  for (const p of ['/', '/console', '/console/devices', '/console/devices/any']) {
    await page.goto(`${base}${p}`);
    check(page.url() === `${base}/console/signin`, `${p} redirects to sign-in, not ${page.url()}`);
  }
  const anonymous = await page.request.post(`${base}/console/devices`, { form: { device_id: 'anon-dev' }, maxRedirects: 0 });
  result.anonymousPost = anonymous.status();

  // A wrong key is refused.
  await page.goto(`${base}/console/signin`);
  await page.fill('[name=policy]', 'iothubowner');
  await page.fill('[name=key]', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=');
  await page.click('button[type=submit]');
  result.badKeyShown = await page.locator('.notice.error').isVisible();

  await signIn(page, base, { connection_string: owner });
  result.overviewHost = await page.textContent('#host-name');
  result.keyMasked = !(await page.content()).includes(owner.split('SharedAccessKey=')[1]);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'ironhub-console');
  result.cookie = { httpOnly: session.httpOnly, secure: session.secure, sameSite: session.sameSite, expires: session.expires };
  const headers = (await page.request.get(`${base}/console`)).headers();
  result.headers = { xfo: headers['x-frame-options'], csp: headers['content-security-policy'] };

  // A post without the CSRF token is refused and creates nothing.
  const noCsrf = await page.request.post(`${base}/console/devices`, { form: { device_id: 'csrf-dev' } });
  result.noCsrfStatus = noCsrf.status();

  // A bad id: a message beside the field.
  await page.goto(`${base}/console/devices`);
  await page.fill('#device_id', 'bad id!');
  await page.click('#create-device button[type=submit]');
  result.badIdMessage = await page.textContent('#device_id-error');

  // Create the device through the form.
  const id = 'console-dev';
  await page.fill('#device_id', id);
  await Promise.all([page.waitForURL(`${base}/console/devices/${id}`), page.click('#create-device button[type=submit]')]);
  await ask('created', { deviceId: id });

  // Live telemetry: the stream is open before the device sends.
  await page.reload();
  await page.waitForSelector('#telemetry[data-state=open]', { state: 'attached' });
  await ask('send-telemetry');
  await page.waitForSelector('#telemetry li:has-text("hello-console")');
  result.telemetry = await page.textContent('#telemetry li');

  // The whole hub's telemetry page, filtered to the device: says who sent each message.
  const hubTelemetry = await context.newPage();
  await hubTelemetry.goto(`${base}/console/telemetry?device=${id}`);
  await hubTelemetry.waitForSelector('#telemetry[data-state=open]', { state: 'attached' });
  await ask('send-hub-telemetry');
  await hubTelemetry.waitForSelector('#telemetry li:has-text("hello-hub")');
  result.hubTelemetry = await hubTelemetry.textContent('#telemetry li');
  await hubTelemetry.close();

  // A cloud-to-device message with a property (Tasmota's Topic=/power).
  await page.fill('#c2d-body', 'ON');
  await page.fill('#c2d-properties', 'Topic=/power');
  await page.click('#c2d-form button[type=submit]');
  result.c2dNotice = await page.textContent('.notice');
  await ask('c2d-sent');

  // Desired properties, then an ETag conflict from a second tab.
  await page.goto(`${base}/console/devices/${id}`);
  const stale = await context.newPage();
  await stale.goto(`${base}/console/devices/${id}`);
  await page.fill('#desired', '{"color": "red"}');
  await page.click('#twin-form button[type=submit]');
  result.twinNotice = await page.textContent('.notice');
  await ask('twin-saved');
  await stale.fill('#desired', '{"color": "blue"}');
  const [conflict] = await Promise.all([
    stale.waitForResponse((r) => r.url().endsWith('/twin')),
    stale.click('#twin-form button[type=submit]'),
  ]);
  result.conflictStatus = conflict.status();
  result.conflictNotice = await stale.textContent('.notice');
  await stale.close();

  // A direct method and its answer.
  await page.fill('#method-name', 'reboot');
  await page.fill('#method-payload', '{"delay": 1}');
  await page.click('#method-form button[type=submit]');
  await page.waitForSelector('#method-result');
  result.methodStatus = await page.textContent('#method-status');
  result.methodResult = JSON.parse(await page.textContent('#method-result'));

  // A module, created through the device page's form; its page has its twin form.
  await page.goto(`${base}/console/devices/${id}`);
  await page.fill('#module_id', 'console-mod');
  await Promise.all([
    page.waitForURL(`${base}/console/devices/${id}/modules/console-mod`),
    page.click('#create-module button[type=submit]'),
  ]);
  result.moduleTwinForms = await page.locator('#twin-form').count();

  // Phone and desktop widths: screenshots, and nothing wider than the screen.
  result.fits = await shots(page, base, artefacts, [['overview', '/console'], ['devices', '/console/devices'], ['device', `/console/devices/${id}`], ['module', `/console/devices/${id}/modules/console-mod`], ['certificates', '/console/certificates'], ['telemetry', '/console/telemetry'], ['routes', '/console/routes']]);

  // Sign out: the pages lead to sign-in again.
  await page.click('nav button[type=submit]');
  await page.goto(`${base}/console/devices/${id}`);
  result.signedOut = page.url() === `${base}/console/signin`;

  // A read-only policy sees no write controls, and a forged post is refused.
  const cs = Object.fromEntries(reader.split(';').map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
  await signIn(page, base, { policy: cs.SharedAccessKeyName, key: cs.SharedAccessKey });
  await page.goto(`${base}/console/devices/${id}`);
  result.readOnlyControls = await page.locator('#status-form, #delete-form, #twin-form, #c2d-form, #method-form').count();
  result.readOnlyTwinShown = await page.locator('#twin-json').count();
  await page.goto(`${base}/console/devices`);
  result.readOnlyCreate = await page.locator('#create-device').count();
  result.readOnlyListed = await page.locator(`#devices a:has-text("${id}")`).count();
  const csrf = await page.getAttribute('nav input[name=csrf]', 'value');
  const forged = await page.request.post(`${base}/console/devices/${id}/delete`, { form: { csrf } });
  result.forgedDeleteStatus = forged.status();
  const forgedCreate = await page.request.post(`${base}/console/devices`, { form: { csrf, device_id: 'forged-dev' } });
  result.forgedCreateStatus = forgedCreate.status();

  return result;
}

run(main);
