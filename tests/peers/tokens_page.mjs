// The personal tokens page in Debian's headless Chromium: visits
// PAGE_URL (/.auth/tokens; the proxy sends the browser through sign-in
// first), creates a token named TOKEN_NAME with the page's form, and
// prints {token, text} (the value as the page shows it once). Waits for a
// line on stdin, reloads the page and prints {text} (the value is gone),
// then clicks the token's Revoke button and prints {text} again.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { CHROMIUM } from './chromium.mjs';

const browser = await chromium.launch(CHROMIUM);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(process.env.PAGE_URL);
  await page.fill('input[name=name]', process.env.TOKEN_NAME);
  await page.fill('input[name=expires_in_days]', '3');
  await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit] >> text=Create')]);
  console.log(JSON.stringify({
    token: await page.innerText('#new-token'),
    text: await page.innerText('body'),
  }));
  await lines.next();
  await page.goto(process.env.PAGE_URL);
  console.log(JSON.stringify({ text: await page.innerText('body') }));
  await Promise.all([page.waitForURL(process.env.PAGE_URL), page.click('button >> text=Revoke')]);
  console.log(JSON.stringify({ text: await page.innerText('body') }));
} finally {
  await browser.close();
}
