// What the console's Playwright scripts share (console.js, console_dps.js, console_routing.js,
// console_bearer.js):
// the talk with the Python test (`ask` prints a `{"wait": name, ...}` line and waits for one
// JSON line on standard input; `done` prints the result, the last line), Debian's Chromium
// launched through playwright-core, sign-in, form posts, and screenshots at a phone's and a
// desktop's width with the check that nothing is wider than the screen.
'use strict';

const readline = require('readline');
const path = require('path');
const { chromium } = require('playwright-core');
const { errorJson } = require('./output');

/** The widths pages are checked and photographed at: a phone's and a desktop's. */
const WIDTHS = [['phone', 390, 844], ['desktop', 1280, 800]];
const STEP_MS = 20000;

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

/** Closes the browser, prints the result (or `{error}`) as the last line and exits. */
async function done(value) {
  if (browser) await browser.close().catch(() => {});
  process.stdout.write(JSON.stringify(value) + '\n');
  process.exit(value.error ? 1 : 0);
}

/**
 * Launches headless Chromium (`$CHROMIUM`, default /usr/bin/chromium) with one page at the
 * desktop width; the script ends with an error after `deadlineMs`. The server's certificate
 * is issued by the test hub's own CA, which Chromium does not know.
 */
async function launch({ deadlineMs = 180000 } = {}) {
  setTimeout(() => done({ error: { name: 'ScriptTimeout', message: `no result within ${deadlineMs} ms` } }), deadlineMs).unref();
  process.on('unhandledRejection', (e) => done({ error: errorJson(e) }));
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  const { context, page } = await newPage();
  return { browser, context, page };
}

/** A fresh browser context (no cookies) at the desktop width, and its page; after `launch`. */
async function newPage() {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(STEP_MS);
  const page = await context.newPage();
  page.on('dialog', (dialog) => dialog.accept());
  return { context, page };
}

/** Runs `main` and reports what it returns, or the error it throws. */
function run(main) {
  main().then((result) => done(result), (e) => done({ error: errorJson(e) }));
}

/**
 * Signs in on `base`'s sign-in form and waits for the landing page. `how` names the form's
 * fields and their values (`{connection_string}`, or `{policy, key}`); `how.dps` signs in to
 * the DPS pages instead of the hub's.
 */
async function signIn(page, base, how) {
  const { dps, ...fields } = how;
  const root = dps ? `${base}/console/dps` : `${base}/console`;
  await page.goto(`${root}/signin`);
  for (const [name, value] of Object.entries(fields)) await page.fill(`[name=${name}]`, value);
  await Promise.all([page.waitForURL(root), page.click('button[type=submit]')]);
}

/** Submits the form `selector` and returns the response to its post, once its page loaded. */
async function submit(page, selector) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    page.click(`${selector} button[type=submit]`),
  ]);
  await page.waitForLoadState();
  return response;
}

/** Whether the page has no horizontal overflow at its width. */
async function assertNoOverflow(page) {
  return page.evaluate(() => document.scrollingElement.scrollWidth <= window.innerWidth);
}

/**
 * Photographs the current page at each of `widths` into `<dir>/<name>-<width label>.png` and
 * returns whether it fits each (`{"<name>-phone": true, ...}`); the page is left at the
 * desktop width.
 */
async function shot(page, dir, name, widths = WIDTHS) {
  const fits = {};
  for (const [label, width, height] of widths) {
    await page.setViewportSize({ width, height });
    fits[`${name}-${label}`] = await assertNoOverflow(page);
    await page.screenshot({ path: path.join(dir, `${name}-${label}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  return fits;
}

/** `shot` of each `[name, path]` page under `base`: every page's fits in one object. */
async function shots(page, base, dir, pages, widths = WIDTHS) {
  const fits = {};
  for (const [name, p] of pages) {
    await page.goto(`${base}${p}`);
    Object.assign(fits, await shot(page, dir, name, widths));
  }
  return fits;
}

module.exports = { WIDTHS, ask, done, launch, newPage, run, signIn, submit, assertNoOverflow, shot, shots };
