// Drives Debian's headless Chromium through a whole sign-in: opens START_URL
// (a page behind the proxy), signs in at the OpenID provider's own login
// and consent pages, and prints what the browser ended on as JSON:
// {url, status, text, cookies}.
import { chromium } from 'playwright-core';
import { CHROMIUM } from './chromium.mjs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const start = process.env.START_URL;
const user = process.env.LOGIN_USER || 'alice';
const profile = mkdtempSync(join(tmpdir(), 'ado-proxy-chromium-'));
const context = await chromium.launchPersistentContext(profile, CHROMIUM);
try {
  const page = await context.newPage();
  await page.goto(start);
  // oidc-provider's development login page, then its consent page.
  await page.fill('input[name=login]', user);
  await page.fill('input[name=password]', 'any');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  const resp = await Promise.all([
    page.waitForNavigation(),
    page.click('button[type=submit]'),
  ]).then(([r]) => r);
  const cookies = await context.cookies();
  console.log(JSON.stringify({
    url: page.url(),
    status: resp ? resp.status() : 0,
    text: await page.textContent('body'),
    cookies,
  }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
