// Drives the web console's DPS pages in headless Chromium (Debian's, through playwright-core)
// for test_console_dps.py. The device and service sides are the Python test's: at each
// `{"wait": name, ...}` line this prints, the script stops until the test answers with one
// JSON line on standard input. The last line is the result object, or {"error": ...}.
//
// Usage: node console_dps.js <base-url> <artefact-dir> <mode>   (mode: owner | reader)
// Environment: IRONHUB_DPS_CONNECTION_STRING (the DPS policy to sign in with), CHROMIUM.
'use strict';

const readline = require('readline');
const path = require('path');
const { chromium } = require('playwright-core');
const { errorJson } = require('./output');

const DEADLINE_MS = 180000;
const STEP_MS = 20000;
const [base, artefacts, mode] = process.argv.slice(2);
const connectionString = process.env.IRONHUB_DPS_CONNECTION_STRING;

const answers = [];
const waiting = [];
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const value = JSON.parse(line);
  if (waiting.length) waiting.shift()(value); else answers.push(value);
});

/** Prints a wait line and returns the test's answer. */
function ask(name, data = {}) {
  process.stdout.write(JSON.stringify({ wait: name, ...data }) + '\n');
  return answers.length ? Promise.resolve(answers.shift()) : new Promise((resolve) => waiting.push(resolve));
}

let browser;
async function done(value) {
  if (browser) await browser.close().catch(() => {});
  process.stdout.write(JSON.stringify(value) + '\n');
  process.exit(value.error ? 1 : 0);
}
setTimeout(() => done({ error: { name: 'ScriptTimeout', message: `no result within ${DEADLINE_MS} ms` } }), DEADLINE_MS).unref();
process.on('unhandledRejection', (e) => done({ error: errorJson(e) }));

/** No horizontal overflow at the page's width. */
async function fits(page) {
  return page.evaluate(() => document.scrollingElement.scrollWidth <= window.innerWidth);
}

/** Submits a form and waits for the answer to its post. */
async function submit(page, formSelector) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    page.click(`${formSelector} button[type=submit]`),
  ]);
  await page.waitForLoadState();
  return response;
}

async function owner(page, context, result) {
  // The group form refuses bad input beside the field.
  await page.goto(`${base}/console/dps/groups`);
  await page.fill('#id', 'bad id!');
  result.badIdStatus = (await submit(page, '#create-enrollment')).status();
  result.badIdMessage = await page.textContent('#id-error');
  await page.fill('#id', 'bad-twin-group');
  await page.fill('#initial_twin', '{"tags": {"site": ');
  result.badTwinStatus = (await submit(page, '#create-enrollment')).status();
  result.badTwinMessage = await page.textContent('#initial_twin-error');
  await page.fill('#id', 'bad-key-group');
  await page.fill('#initial_twin', '');
  await page.fill('#primary_key', 'not a key!');
  result.badKeyStatus = (await submit(page, '#create-enrollment')).status();
  result.badKeyMessage = await page.textContent('#primary_key-error');

  // A symmetric-key group with generated keys and an initial twin.
  await page.fill('#id', 'console-group');
  await page.fill('#primary_key', '');
  await page.fill('#initial_twin', '{"tags": {"site": "lab"}, "properties": {"desired": {"fw": "1.2"}}}');
  await page.selectOption('#allocation_policy', 'hashed');
  await Promise.all([page.waitForURL(`${base}/console/dps/groups/console-group`), page.click('#create-enrollment button[type=submit]')]);
  result.groupKeyMasked = (await page.locator('code.secret').count()) === 0;

  // The device key of a registration id, derived from the group key.
  await page.fill('#registration_id', 'console-dev-1');
  await submit(page, '#device-key-form');
  const deviceKey = await page.textContent('#device-key');
  await ask('derived', { registrationId: 'console-dev-1', key: deviceKey });
  // The device registered: its registration shows on the group's page.
  await page.goto(`${base}/console/dps/groups/console-group`);
  result.registrationShown = await page.textContent('#registrations');

  // An individual enrollment with an X.509 device certificate.
  const { certificate, registrationId } = await ask('x509');
  await page.goto(`${base}/console/dps/enrollments`);
  await page.fill('#id', registrationId);
  await page.selectOption('#attestation', 'x509');
  await page.fill('#primary_certificate', certificate);
  await Promise.all([page.waitForURL(`${base}/console/dps/enrollments/${registrationId}`), page.click('#create-enrollment button[type=submit]')]);
  result.x509Attestation = await page.textContent('#attestation-type');

  // A CA certificate with proof of possession.
  const { ca, name } = await ask('ca');
  await page.goto(`${base}/console/dps/certificates`);
  await page.fill('#name', name);
  await page.fill('#certificate', ca);
  await Promise.all([page.waitForURL(`${base}/console/dps/certificates/${name}`), page.click('#upload-certificate button[type=submit]')]);
  await submit(page, '#code-form');
  const code = await page.textContent('#verification-code');
  const { proof } = await ask('code', { code });
  await page.fill('#proof', proof);
  await submit(page, '#verify-form');
  result.verified = await page.textContent('#verified');

  // Phone and desktop widths: screenshots, and nothing wider than the screen.
  result.fits = {};
  for (const [label, width, height] of [['phone', 390, 844], ['desktop', 1280, 800]]) {
    await page.setViewportSize({ width, height });
    for (const [name, p] of [['dps-overview', '/console/dps'], ['dps-groups', '/console/dps/groups'], ['dps-group', '/console/dps/groups/console-group'], ['dps-enrollments', '/console/dps/enrollments'], ['dps-enrollment', `/console/dps/enrollments/${registrationId}`], ['dps-certificates', '/console/dps/certificates']]) {
      await page.goto(`${base}${p}`);
      result.fits[`${name}-${label}`] = await fits(page);
      await page.screenshot({ path: path.join(artefacts, `${name}-${label}.png`), fullPage: true });
    }
  }
}

async function reader(page, context, result) {
  await page.goto(`${base}/console/dps/groups`);
  result.readerListed = await page.locator('#enrollments a:has-text("console-group")').count();
  result.readerCreate = await page.locator('#create-enrollment').count();
  await page.goto(`${base}/console/dps/groups/console-group`);
  result.readerControls = await page.locator('#edit-enrollment, #delete-enrollment, #device-key-form, #show-keys, .delete-registration').count();
  const csrf = await page.getAttribute('nav input[name=csrf]', 'value');
  const forgedDelete = await page.request.post(`${base}/console/dps/groups/console-group/delete`, { form: { csrf } });
  result.forgedDeleteStatus = forgedDelete.status();
  const forgedCreate = await page.request.post(`${base}/console/dps/groups`, { form: { csrf, id: 'forged-group', attestation: 'symmetricKey', enabled: 'on' } });
  result.forgedCreateStatus = forgedCreate.status();
}

async function main() {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(STEP_MS);
  const page = await context.newPage();
  page.on('dialog', (dialog) => dialog.accept());
  const result = {};

  // Without a DPS session the DPS pages lead to the DPS sign-in.
  await page.goto(`${base}/console/dps/groups`);
  result.anonymousRedirect = page.url();

  await page.goto(`${base}/console/dps/signin`);
  await page.fill('#connection_string', connectionString);
  await Promise.all([page.waitForURL(`${base}/console/dps`), page.click('button[type=submit]')]);
  result.idScope = await page.textContent('#id-scope');
  result.keyMasked = !(await page.content()).includes(connectionString.split('SharedAccessKey=')[1]);
  const session = (await context.cookies()).find((c) => c.name === 'ironhub-console-dps');
  result.cookie = { httpOnly: session.httpOnly, secure: session.secure, sameSite: session.sameSite };
  const headers = (await page.request.get(`${base}/console/dps`)).headers();
  result.headers = { xfo: headers['x-frame-options'], csp: headers['content-security-policy'] };
  const noCsrf = await page.request.post(`${base}/console/dps/groups`, { form: { id: 'csrf-group' } });
  result.noCsrfStatus = noCsrf.status();

  if (mode === 'reader') await reader(page, context, result); else await owner(page, context, result);
  await done(result);
}

main().catch((e) => done({ error: errorJson(e) }));
