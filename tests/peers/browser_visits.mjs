// Visits PAGE_URL in Debian's headless Chromium, prints where the browser
// ended as JSON ({url, status, text}), then waits for a line on stdin and
// visits it again in the same browser (cookies kept), printing again. The
// test changes the world in between (e.g. revokes the user's token).
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { CHROMIUM } from './chromium.mjs';

const browser = await chromium.launch(CHROMIUM);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
try {
  const page = await (await browser.newContext()).newPage();
  for (let visit = 0; visit < 2; visit += 1) {
    if (visit > 0) {
      await lines.next();
    }
    const resp = await page.goto(process.env.PAGE_URL);
    console.log(JSON.stringify({
      url: page.url(),
      status: resp.status(),
      text: await page.innerText('body'),
    }));
  }
} finally {
  await browser.close();
}
