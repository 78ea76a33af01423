// Drives the web console's bearer-token sign-in in headless Chromium (Debian's, through
// playwright-core) for test_console_bearer.py: policy sign-in refused while local
// authentication is off, bad tokens refused beside the field, a contributor token that creates
// a device, a reader token that sees no write controls and whose forged posts are refused, a
// short-lived token whose session ends with it, and a DPS token that creates an enrollment
// group. Prints one JSON line: the result object, or {"error": ...}.
//
// Usage: node console_bearer.js <base-url> <artefact-dir>
// Environment: IRONHUB_TOKENS (JSON: contributor, reader, expired, otherAudience, unknownKey,
// short, dps), IRONHUB_CONNECTION_STRING, IRONHUB_DPS_CONNECTION_STRING, CHROMIUM.
'use strict';

const { request } = require('playwright-core');
const { launch, newPage, run, submit, shot, shots } = require('./console_common');

// How long the short-lived token's session may outlive the token before the test fails.
const EXPIRY_WAIT_MS = 20000;
const [base, artefacts] = process.argv.slice(2);
const tokens = JSON.parse(process.env.IRONHUB_TOKENS);

/** Signs in with `token` on `signin` and waits for `landing`. */
async function tokenSignIn(page, signin, token, landing) {
  await page.goto(`${base}${signin}`);
  await page.fill('#access_token', token);
  await Promise.all([page.waitForURL(`${base}${landing}`), page.click('#token-signin button[type=submit]')]);
}

async function refusals(result) {
  const { context, page } = await newPage();
  // Local authentication is off: a policy is refused with the REST API's words.
  await page.goto(`${base}/console/signin`);
  await page.fill('#connection_string', process.env.IRONHUB_CONNECTION_STRING);
  result.policyStatus = (await submit(page, '#policy-signin')).status();
  result.policyMessage = await page.textContent('#policy-error');
  await page.goto(`${base}/console/dps/signin`);
  await page.fill('#connection_string', process.env.IRONHUB_DPS_CONNECTION_STRING);
  result.dpsPolicyStatus = (await submit(page, '#policy-signin')).status();
  result.dpsPolicyMessage = await page.textContent('#policy-error');
  // Bad tokens: refused beside the field, no session.
  result.badTokens = {};
  for (const name of ['expired', 'otherAudience', 'unknownKey']) {
    await page.goto(`${base}/console/signin`);
    await page.fill('#access_token', tokens[name]);
    const status = (await submit(page, '#token-signin')).status();
    result.badTokens[name] = { status, message: await page.textContent('#access_token-error') };
  }
  result.refusedCookies = (await context.cookies()).map((c) => c.name);
  Object.assign(result.fits, await shots(page, base, artefacts, [['signin-refused', '/console/signin']]));
  await page.goto(`${base}/console/signin`);
  await page.fill('#access_token', tokens.expired);
  await submit(page, '#token-signin');
  Object.assign(result.fits, await shot(page, artefacts, 'signin-token-error'));
  await context.close();
}

async function contributor(result) {
  const { context, page } = await newPage();
  await tokenSignIn(page, '/console/signin', tokens.contributor, '/console');
  result.contributorWho = await page.textContent('#signed-in-as');
  result.contributorNav = await page.textContent('nav .who');
  result.tokenInPage = (await page.content()).includes(tokens.contributor);
  const session = (await context.cookies()).find((c) => c.name === 'ironhub-console');
  result.cookie = { httpOnly: session.httpOnly, secure: session.secure, sameSite: session.sameSite, expires: session.expires };
  result.cookieHoldsToken = session.value.includes(tokens.contributor.split('.')[1]);
  await page.goto(`${base}/console/devices`);
  await page.fill('#device_id', 'bearer-dev');
  await Promise.all([page.waitForURL(`${base}/console/devices/bearer-dev`), page.click('#create-device button[type=submit]')]);
  await page.goto(`${base}/console/devices`);
  result.contributorListed = await page.locator('#devices a:has-text("bearer-dev")').count();
  Object.assign(result.fits, await shots(page, base, artefacts, [['bearer-overview', '/console'], ['bearer-devices', '/console/devices'], ['bearer-device', '/console/devices/bearer-dev']]));
  await context.close();
}

async function reader(result) {
  const { context, page } = await newPage();
  await tokenSignIn(page, '/console/signin', tokens.reader, '/console');
  result.readerWho = await page.textContent('#signed-in-as');
  await page.goto(`${base}/console/devices`);
  result.readerListed = await page.locator('#devices a:has-text("bearer-dev")').count();
  result.readerCreate = await page.locator('#create-device').count();
  await page.goto(`${base}/console/devices/bearer-dev`);
  result.readerControls = await page.locator('#status-form, #delete-form, #twin-form, #c2d-form, #method-form').count();
  const csrf = await page.getAttribute('nav input[name=csrf]', 'value');
  const forgedDelete = await page.request.post(`${base}/console/devices/bearer-dev/delete`, { form: { csrf } });
  result.forgedDeleteStatus = forgedDelete.status();
  const forgedCreate = await page.request.post(`${base}/console/devices`, { form: { csrf, device_id: 'forged-dev' } });
  result.forgedCreateStatus = forgedCreate.status();
  await context.close();
}

async function shortLived(result) {
  const { context, page } = await newPage();
  await tokenSignIn(page, '/console/signin', tokens.short, '/console');
  const session = (await context.cookies()).find((c) => c.name === 'ironhub-console');
  result.shortCookieExpires = session.expires;
  // The server's own check, whatever the browser does with Max-Age: the cookie is sent
  // explicitly until the server stops taking it.
  const api = await request.newContext({ ignoreHTTPSErrors: true, extraHTTPHeaders: { cookie: `ironhub-console=${session.value}` } });
  const first = await api.get(`${base}/console`, { maxRedirects: 0 });
  result.shortFirstStatus = first.status();
  const started = Date.now();
  let last = first;
  while (Date.now() - started < EXPIRY_WAIT_MS) {
    last = await api.get(`${base}/console`, { maxRedirects: 0 });
    if (last.status() !== 200) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  result.shortEnded = { status: last.status(), location: last.headers().location, at: Date.now() / 1000 };
  await api.dispose();
  // And in the browser, the page leads to the sign-in.
  await page.goto(`${base}/console/devices`);
  result.shortRedirect = page.url();
  await context.close();
}

async function dps(result) {
  const { context, page } = await newPage();
  await tokenSignIn(page, '/console/dps/signin', tokens.dps, '/console/dps');
  result.dpsWho = await page.textContent('#signed-in-as');
  await page.goto(`${base}/console/dps/groups`);
  await page.fill('#id', 'bearer-group');
  await Promise.all([page.waitForURL(`${base}/console/dps/groups/bearer-group`), page.click('#create-enrollment button[type=submit]')]);
  Object.assign(result.fits, await shots(page, base, artefacts, [['bearer-dps-overview', '/console/dps'], ['bearer-dps-group', '/console/dps/groups/bearer-group']]));
  await context.close();
}

run(async () => {
  // Each part signs in on a fresh context of its own; launch's first is not needed.
  await (await launch()).context.close();
  const result = { fits: {} };
  // First: its token lives seconds.
  await shortLived(result);
  await refusals(result);
  await contributor(result);
  await reader(result);
  await dps(result);
  return result;
});
