// Opens PAGE_URL in Debian's headless Chromium and prints what a person
// would see, as JSON: {status, title, text, requests} (requests counts
// every request the page made, to prove it is self-contained).
import { chromium } from 'playwright-core';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
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
