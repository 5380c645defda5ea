// Opens PAGE_URL (a single-page app on its own origin) in Debian's headless
// Chromium and, from that page, calls TARGET the way an SPA does: a
// credentialed PATCH with a JSON body and a custom header, which needs a
// CORS preflight. Prints {status, body, requestId} or {error} as JSON.
import { chromium } from 'playwright-core';
import { CHROMIUM } from './chromium.mjs';

const browser = await chromium.launch(CHROMIUM);
try {
  const page = await browser.newPage();
  await page.goto(process.env.PAGE_URL);
  const result = await page.evaluate(async (target) => {
    try {
      const r = await fetch(target, {
        method: 'PATCH',
        credentials: 'include',
        headers: { 'content-type': 'application/json', 'x-app': 'dashboard' },
        body: '{"name":"renamed"}',
      });
      return { status: r.status, body: await r.text(), requestId: r.headers.get('x-request-id') };
    } catch (e) {
      return { error: String(e) };
    }
  }, process.env.TARGET);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
