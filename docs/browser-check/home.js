// node home.js <rpcport> <cookie password> <wait seconds> [hash]
// Opens twister-html's home page as a guest and logs every RPC call with
// its HTTP status and JSON-RPC error, plus console and page errors.
const { chromium } = require('playwright-core');
const [port, pass, waitS, hash] = process.argv.slice(2);
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'] }); // launch() gives a fresh temporary profile
  const ctx = await browser.newContext({ httpCredentials: { username: '__cookie__', password: pass } });
  if (process.env.AS_USER) await ctx.addInitScript(u => { try { localStorage.setItem('defaultScreenName', JSON.stringify(u)); } catch (e) {} }, process.env.AS_USER);
  const page = await ctx.newPage();
  const calls = {};
  page.on('console', m => { if (m.type() === 'error' || m.type() === 'warning') console.log('console.' + m.type() + ': ' + m.text()); });
  page.on('pageerror', e => console.log('pageerror: ' + e.message));
  page.on('response', async r => {
    const req = r.request();
    if (req.method() !== 'POST') { if (r.status() >= 400) console.log('GET ' + r.url() + ' ' + r.status()); return; }
    let m = '?', params = '';
    try { const b = JSON.parse(req.postData()); m = b.method; params = JSON.stringify(b.params || []); } catch (e) {}
    let body = ''; try { body = await r.text(); } catch (e) {}
    let err = null; try { err = JSON.parse(body).error; } catch (e) {}
    const key = m + ' ' + r.status() + (err ? ' ERR ' + JSON.stringify(err) : '');
    if (!calls[key]) { calls[key] = 0; console.log('rpc ' + key + ' params=' + params.slice(0, 200) + ' reply=' + body.slice(0, 300)); }
    calls[key]++;
  });
  await page.goto(hash && hash.startsWith('/') ? `http://127.0.0.1:${port}${hash}` : `http://127.0.0.1:${port}/home.html${hash || ''}`, { waitUntil: 'load' });
  await page.waitForTimeout(Number(waitS) * 1000);
  await page.screenshot({ path: './home' + (process.env.AS_USER || '') + (hash ? hash.replace(/[^a-z]/g, '') : '') + '.png' });
  for (const k of Object.keys(calls)) console.log('count ' + calls[k] + ' ' + k);
  await browser.close();
})();
