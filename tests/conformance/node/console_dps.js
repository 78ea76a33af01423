// Drives the web console's DPS pages in headless Chromium (Debian's, through playwright-core)
// for test_console_dps.py. The device and service sides are the Python test's: at each
// `{"wait": name, ...}` line this prints, the script stops until the test answers with one
// JSON line on standard input. The last line is the result object, or {"error": ...}.
//
// Usage: node console_dps.js <base-url> <artefact-dir> <mode>   (mode: owner | reader | hubs)
// Environment: IRONHUB_DPS_CONNECTION_STRING (the DPS policy to sign in with), in hubs mode
// IRONHUB_DPS_READ_CONNECTION_STRING (a policy without ServiceConfig), CHROMIUM.
'use strict';

const { ask, launch, run, signIn, submit, shot, shots } = require('./console_common');

const [base, artefacts, mode] = process.argv.slice(2);
const connectionString = process.env.IRONHUB_DPS_CONNECTION_STRING;

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
  result.fits = await shots(page, base, artefacts, [['dps-overview', '/console/dps'], ['dps-groups', '/console/dps/groups'], ['dps-group', '/console/dps/groups/console-group'], ['dps-enrollments', '/console/dps/enrollments'], ['dps-enrollment', `/console/dps/enrollments/${registrationId}`], ['dps-certificates', '/console/dps/certificates']]);
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

/** The text of the overview's first notice, or of the error beside `field`. */
async function said(page, field) {
  const where = field ? `#${field}-error` : '.notice';
  return (await page.locator(where).first().textContent().catch(() => '')) || '';
}

/** Fills the link form with `connectionString` (and a weight and location) and posts it. */
async function link(page, connectionString, weight = '', location = '') {
  await page.goto(`${base}/console/dps`);
  await page.fill('#connection_string', connectionString);
  await page.fill('#allocation_weight', weight);
  await page.fill('#location', location);
  return (await submit(page, '#link-hub-form')).status();
}

/** A linked hub's row of the overview's table, as `{weight, location, latency}`. */
async function row(page, name) {
  const tr = page.locator('#linked-hubs tbody tr', { hasText: name });
  if (!(await tr.count())) return null;
  return {
    weight: await tr.locator('input.weight').inputValue().catch(() => null),
    location: (await tr.locator('td.location').textContent()).trim(),
    latency: (await tr.locator('td.latency').textContent()).trim(),
  };
}

async function hubs(page, context, result) {
  // Refusals beside the connection string, nothing linked.
  result.badStatus = await link(page, 'HostName=;SharedAccessKey=nothing');
  result.badMessage = await said(page, 'connection_string');
  result.deviceStringStatus = await link(page, 'HostName=hub.example;DeviceId=d1;SharedAccessKey=a2V5');
  result.deviceStringMessage = await said(page, 'connection_string');
  const { connectionString: other, name } = await ask('other-hub');
  result.badWeightStatus = await link(page, other, '5000');
  result.badWeightMessage = await said(page, 'allocation_weight');
  await ask('nothing-linked');

  // The other hub linked with weight 2 in 'lab'; its row shows the latency DPS measured.
  result.linkStatus = await link(page, other, '2', 'lab');
  result.linkNotice = await said(page);
  result.linkedRow = await row(page, name);
  result.duplicateStatus = await link(page, other);
  result.duplicateMessage = await said(page, 'connection_string');
  await page.goto(`${base}/console/dps`);
  result.fits = await shot(page, artefacts, 'dps-linked-hubs');
  await ask('linked', { name });

  // Unlinking: the row's link leads to a confirmation, its button unlinks.
  await page.goto(`${base}/console/dps`);
  await Promise.all([page.waitForURL(`${base}/console/dps/linked-hubs/${name}/delete`), page.click(`#linked-hubs a.unlink[href*="${name}"]`)]);
  result.confirmTitle = await page.textContent('main h2');
  Object.assign(result.fits, await shot(page, artefacts, 'dps-unlink'));
  await Promise.all([page.waitForURL(`${base}/console/dps`), page.click('#unlink-hub-form button[type=submit]')]);
  result.rowAfterUnlink = await row(page, name);
  await ask('unlinked');

  // A DPS policy without ServiceConfig: no link form, no unlink links; forged posts refused.
  await page.click('nav button[type=submit]');
  await signIn(page, base, { dps: true, connection_string: process.env.IRONHUB_DPS_READ_CONNECTION_STRING });
  result.readerForms = await page.locator('#link-hub-form, a.unlink, .linked-hub-form').count();
  const csrf = await page.getAttribute('nav input[name=csrf]', 'value');
  const own = new URL(base).hostname;
  result.forgedLinkStatus = (await page.request.post(`${base}/console/dps/linked-hubs`, { form: { csrf, connection_string: other } })).status();
  result.forgedUnlinkStatus = (await page.request.post(`${base}/console/dps/linked-hubs/${own}/delete`, { form: { csrf } })).status();
  result.forgedConfirmStatus = (await page.request.get(`${base}/console/dps/linked-hubs/${own}/delete`)).status();
}

async function main() {
  const { context, page } = await launch();
  const result = {};

  // Without a DPS session the DPS pages lead to the DPS sign-in.
  await page.goto(`${base}/console/dps/groups`);
  result.anonymousRedirect = page.url();

  await signIn(page, base, { dps: true, connection_string: connectionString });
  result.idScope = await page.textContent('#id-scope');
  result.deviceEndpoint = await page.textContent('#device-endpoint');
  result.serviceEndpoint = await page.textContent('#service-endpoint');
  if (mode === 'hubs') {
    await hubs(page, context, result);
    return result;
  }
  result.keyMasked = !(await page.content()).includes(connectionString.split('SharedAccessKey=')[1]);
  const session = (await context.cookies()).find((c) => c.name === 'ironhub-console-dps');
  result.cookie = { httpOnly: session.httpOnly, secure: session.secure, sameSite: session.sameSite };
  const headers = (await page.request.get(`${base}/console/dps`)).headers();
  result.headers = { xfo: headers['x-frame-options'], csp: headers['content-security-policy'] };
  const noCsrf = await page.request.post(`${base}/console/dps/groups`, { form: { id: 'csrf-group' } });
  result.noCsrfStatus = noCsrf.status();

  if (mode === 'reader') await reader(page, context, result); else await owner(page, context, result);
  return result;
}

run(main);
