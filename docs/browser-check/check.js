// Usage: node check.js <rpcport> <cookie password> <user> <peer> <group alias> <unused> <a group text> <text to send>
// (playwright-core and Debian chromium; see docs/twister-html.md "Origin and Host checks").
// Headless Chromium against a twgroupd devnet node: the DM and group pages
// of twister-html served by twgroupd (same origin), after the Origin/Host checks.
const { chromium } = require('playwright-core');
const [port, pass, user, peer, group, dmText, groupText, sendText] = process.argv.slice(2);
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const ctx = await browser.newContext({ httpCredentials: { username: '__cookie__', password: pass } });
  await ctx.addInitScript(u => { try { localStorage.setItem('defaultScreenName', JSON.stringify(u)); } catch (e) {} }, user);
  const page = await ctx.newPage();
  const bad = [], rpc = {};
  let origins = new Set();
  page.on('request', r => { if (r.method() === 'POST') { const o = r.headers()['origin']; if (o) origins.add(o); } });
  page.on('response', async r => {
    const req = r.request();
    if (req.method() === 'POST' && new URL(r.url()).pathname === '/') {
      let m = '?'; try { m = JSON.parse(req.postData()).method; } catch (e) {}
      rpc[m] = (rpc[m] || 0) + 1;
      if (r.status() === 403 || r.status() === 401) bad.push(m + ' ' + r.status());
    } else if (r.status() === 403 || r.status() === 401) bad.push(r.url() + ' ' + r.status());
  });
  const base = `http://${process.env.HOSTNAME_UNDER_TEST || "127.0.0.1"}:${port}/home.html`;
  const step = async (name, hash, want) => {
    await page.goto(base + hash, { waitUntil: 'load' });
    let ok = false;
    for (let i = 0; i < 40 && !ok; i++) { await page.waitForTimeout(500); ok = (await page.content()).includes(want); }
    await page.screenshot({ path: `/tmp/h11rpc-pw/shots/${name}.png` });
    console.log(`${name}: ${ok ? 'shows' : 'MISSING'} "${want}"`);
    return ok;
  };
  let all = true;
  // The devnet's only alice->bob DM is that conversation's oldest message,
  // which twister-html's thread poll skips (docs/twister-html.md caveats):
  // send one from the page and see it in the thread.
  const send = async (name, hash, text) => {
    await page.goto(base + hash, { waitUntil: 'load' });
    await page.waitForTimeout(2000);
    const before = rpc['newdirectmsg'] || 0;
    const ta = page.getByRole('textbox', { name: 'New direct message...' });
    await ta.waitFor({ state: 'visible', timeout: 20000 });
    await ta.click(); await ta.pressSequentially(text);
    await page.locator('.modal-content .dm-submit').last().click();
    let sent = false;
    for (let i = 0; i < 40 && !sent; i++) { await page.waitForTimeout(250); sent = (rpc['newdirectmsg'] || 0) > before; }
    console.log(`${name}: newdirectmsg ${sent ? 'sent' : 'NOT sent'}`);
    return sent;
  };
  all &= await send('dm-send', `#directmessages?user=${peer}`, sendText + ' (dm)');
  all &= await step('dm-thread', `#directmessages?user=${peer}`, sendText + ' (dm)');
  all &= await step('group-thread', `#directmessages?group=${group}`, groupText);
  all &= await send('group-send', `#directmessages?group=${group}`, sendText + ' (group)');
  all &= await step('group-thread-after-send', `#directmessages?group=${group}`, sendText + ' (group)');
  all &= await step('group-list', '#groupmessages', 'devnet group, renamed');
  console.log('origins sent by the browser:', [...origins].join(' '));
  console.log('rpc calls:', JSON.stringify(rpc));
  console.log('refused (401/403):', bad.length ? bad.join(', ') : 'none');
  await browser.close();
  process.exit(all && bad.length === 0 ? 0 : 1);
})().catch(e => { console.error(e); process.exit(2); });
