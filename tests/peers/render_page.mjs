// Opens PAGE_URL in Debian's headless Chromium and prints what a person
// would see, as JSON: {status, title, text, requests} (requests counts
// every request the page made, to prove it is self-contained).
import { chromium } from 'playwright-core';
import { CHROMIUM } from './chromium.mjs';

const browser = await chromium.launch(CHROMIUM);
try {
  const page = await browser.newPage();
  let requests = 0;
  page.on('request', () => { requests += 1; });
  const resp = await page.goto(process.env.PAGE_URL);
  console.log(JSON.stringify({
    status: resp.status(),
    title: await page.title(),
    text: await page.innerText('body'),
    requests,
  }));
} finally {
  await browser.close();
}
