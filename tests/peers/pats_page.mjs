// The Azure DevOps PATs page in Debian's headless Chromium: visits
// PAGE_URL (/.auth/pats?org=…; the proxy sends the browser through
// sign-in first), ticks the first scope, creates a PAT named PAT_NAME,
// prints {pat, text} (the value as the page shows it once), then clicks
// Revoke on the listed PAT and prints {text}.
import { chromium } from 'playwright-core';
import { CHROMIUM } from './chromium.mjs';

const browser = await chromium.launch(CHROMIUM);
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(process.env.PAGE_URL);
  await page.fill('input[name=name]', process.env.PAT_NAME);
  await page.check('input[name=scope] >> nth=0');
  await Promise.all([page.waitForLoadState('load'), page.click('button >> text=Create')]);
  console.log(JSON.stringify({
    pat: await page.innerText('#new-pat'),
    text: await page.innerText('body'),
  }));
  await Promise.all([page.waitForURL(process.env.PAGE_URL), page.click('button >> text=Revoke')]);
  console.log(JSON.stringify({ text: await page.innerText('body') }));
} finally {
  await browser.close();
}
