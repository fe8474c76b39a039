// Usage: serve evil.html from another origin (python3 -m http.server 38999 --bind 127.0.0.2), then
// node evil.js <rpcport> <cookie password> 38999: the POST it makes with cached basic auth must get 403.
const { chromium } = require('playwright-core');
const [port, pass, evilPort] = process.argv.slice(2);
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless','--no-sandbox','--disable-gpu','--disable-quic','--no-first-run','--disable-background-networking','--disable-component-update','--disable-sync'] });
  const ctx = await browser.newContext({ httpCredentials: { username: '__cookie__', password: pass } });
  const page = await ctx.newPage();
  const seen = [];
  page.on('response', r => { if (r.request().method() === 'POST') seen.push(r.status() + ' origin=' + r.request().headers()['origin']); });
  await page.goto(`http://127.0.0.2:${evilPort}/evil.html#${port}`);
  await page.waitForTimeout(3000);
  console.log('cross-origin POST from a page on 127.0.0.2:', seen.join(', ') || 'no response seen');
  await browser.close();
})();
