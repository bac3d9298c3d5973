// The web console and the status pages of a running `openmvs demo --fake-clock`, driven in
// headless Chromium as each of its users would: sign-in per role and what each may and may not
// see, an alert taken from report to closure by the NMVO and the OBP on their two consoles, an
// audit search exported, an incident opened by the rules after slow answers and shown on the
// status page and in the feed. Every page is checked with axe-core: no serious or critical
// violation. Usage: node console.mjs DEMO_JSON [--screenshots DIR]
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import axe from 'axe-core';

const args = process.argv.slice(2);
const demo = JSON.parse(readFileSync(args[0], 'utf8'));
const shots = args.includes('--screenshots') ? args[args.indexOf('--screenshots') + 1] : null;
if (shots) mkdirSync(shots, { recursive: true });

const market = Object.keys(demo.markets).sort()[0];
const nat = demo.markets[market];
const hub = demo.hub.url;
const client = (role) => nat.clients.find((c) => c.role === role);
const obp = demo.obps[0];
const sample = demo.samples.find((s) => s.market === market);

let failures = 0;
const step = (what) => console.log(`- ${what}`);
function expect(cond, what) {
  if (!cond) {
    failures += 1;
    console.log(`  FAILED: ${what}`);
    throw new Error(what);
  }
}

async function checkPage(page, name, { tablet = false } = {}) {
  await page.addScriptTag({ content: axe.source });
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of bad) console.log(`  axe ${v.impact} ${v.id} on ${name}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')})`);
  expect(bad.length === 0, `no serious or critical accessibility violation on ${name}`);
  if (tablet) {
    const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
    expect(fits, `${name} fits a tablet's width`);
  }
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function eventually(what, f, seconds = 60) {
  const until = Date.now() + seconds * 1000;
  for (;;) {
    if (await f()) return;
    if (Date.now() > until) expect(false, what);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const context = (extra = {}) =>
  browser.newContext({ ignoreHTTPSErrors: true, bypassCSP: true, viewport: { width: 1280, height: 900 }, ...extra });

async function signIn(role) {
  const ctx = await context();
  const page = await ctx.newPage();
  await page.goto(`${nat.url}/ui`);
  expect(page.url().endsWith('/ui/login'), `${role}: a visitor without a session is sent to the sign-in`);
  await checkPage(page, 'sign-in');
  await page.getByLabel('Client id').fill(client(role).client_id);
  await page.getByLabel('Client secret').fill(client(role).client_secret);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${nat.url}/ui`);
  const cookies = await ctx.cookies();
  const session = cookies.find((c) => c.name === 'openmvs_session');
  expect(session && session.httpOnly && session.secure && session.sameSite === 'Strict', `${role}: the session cookie is HttpOnly, Secure and SameSite=Strict`);
  return { ctx, page };
}

try {
  // The public status pages.
  step('status pages');
  {
    const ctx = await context();
    const page = await ctx.newPage();
    await page.goto(`${nat.url}/status`);
    expect(await page.getByRole('heading', { name: `OpenMVS national system ${market}` }).isVisible(), 'the national status page');
    expect(await page.getByRole('heading', { name: 'By month', exact: true }).isVisible(), 'the monthly table');
    await checkPage(page, 'status');
    await page.goto(`${hub}/status`);
    expect(await page.getByRole('heading', { name: 'OpenMVS European Hub' }).isVisible(), 'the hub status page');
    await checkPage(page, 'hub-status');
    const tablet = await context({ viewport: { width: 768, height: 1024 } });
    const t = await tablet.newPage();
    await t.goto(`${nat.url}/status`);
    await checkPage(t, 'status-tablet', { tablet: true });
    await tablet.close();
    await ctx.close();
  }

  // Each role signs in and sees what it may.
  step('sign-in per role');
  const nmvo = await signIn('NMVO');
  const nca = await signIn('NCA');
  const pharmacy = await signIn('PHARMACY');
  await checkPage(nmvo.page, 'console-home');
  expect(await nmvo.page.getByRole('link', { name: 'Audit trail', exact: true }).isVisible(), 'the NMVO has the audit trail');
  expect(await nca.page.getByRole('link', { name: 'Audit trail', exact: true }).isVisible(), 'the NCA has the audit trail');
  expect(!(await pharmacy.page.getByRole('link', { name: 'Audit trail', exact: true }).count()), 'a pharmacy has no audit trail');
  const refused = await pharmacy.page.goto(`${nat.url}/ui/audit`);
  expect(refused.status() === 403, 'a pharmacy is refused the audit trail');
  await checkPage(pharmacy.page, 'not-allowed');

  // A pharmacy's software raises an alert: a pack that was never uploaded.
  step('an alert raised by a pharmacy');
  const api = await context();
  const tokenOf = async (c) =>
    (await (await api.request.post(`${nat.url}/oauth/token`, { form: { grant_type: 'client_credentials', client_id: c.client_id, client_secret: c.client_secret } })).json()).access_token;
  const phToken = await tokenOf(client('PHARMACY'));
  const pack = { scheme: 'GTIN', product_code: sample.product_code, batch: sample.batch, expiry: sample.expiry };
  const stamp = Date.now();
  const raised = await (await api.request.post(`${nat.url}/v1/packs/verify`, {
    headers: { authorization: `Bearer ${phToken}` },
    data: { ...pack, serial: `NEVER${stamp}`.slice(0, 20), client_trx_id: `browser-${stamp}-1` },
  })).json();
  expect(raised.alert && raised.alert.id, 'the verify raised an alert');
  const alertId = raised.alert.id;
  await pharmacy.page.goto(`${nat.url}/ui/alerts`);
  expect(await pharmacy.page.getByRole('link', { name: alertId }).isVisible(), 'the pharmacy sees the alert it raised');

  // The NMVO works it on her console.
  step('the NMVO investigates');
  await nmvo.page.goto(`${nat.url}/ui/alerts?status=OPEN`);
  await checkPage(nmvo.page, 'workbench-list');
  await nmvo.page.getByRole('link', { name: alertId }).click();
  await nmvo.page.getByLabel('New status').selectOption('INVESTIGATING');
  await nmvo.page.getByLabel('Comment (optional)').fill('Asked the pharmacy for the pack.');
  await nmvo.page.getByRole('button', { name: 'Change the status' }).click();
  expect(await nmvo.page.getByText('The status was changed.').isVisible(), 'the NMVO changed the status');

  // The OBP sees it on its console at the hub, signed in by its certificate, and answers.
  step('the OBP answers on its console');
  const obpCtx = await context({ clientCertificates: [{ origin: hub, certPath: obp.cert, keyPath: obp.key }] });
  const op = await obpCtx.newPage();
  await eventually('the alert and the NMVO\'s change reach the OBP', async () => {
    await op.goto(`${hub}/ui/alerts/${alertId}`);
    return (await op.content()).includes('Asked the pharmacy for the pack.');
  });
  await checkPage(op, 'obp-alert');
  await op.getByLabel('Comment', { exact: true }).fill('The serial was never uploaded by us: a falsification.');
  await op.getByRole('button', { name: 'Add the comment' }).click();
  expect(await op.getByText('Your comment was added').isVisible(), 'the OBP commented');
  await op.goto(`${hub}/ui/alerts`);
  await checkPage(op, 'obp-workbench');
  const anonymous = await context();
  const noCert = await (await anonymous.newPage()).goto(`${hub}/ui/alerts`);
  expect(noCert.status() === 403, 'no certificate, no OBP console');

  // The NMVO sees the OBP's comment and closes the alert; the NCA is owed the report.
  step('the NMVO closes it; the NCA gets the report; the OBP sees the closure');
  await eventually('the OBP\'s comment reaches the NMVO', async () => {
    await nmvo.page.goto(`${nat.url}/ui/alerts/${alertId}`);
    return (await nmvo.page.content()).includes('never uploaded by us');
  });
  await checkPage(nmvo.page, 'workbench-alert');
  await nmvo.page.getByLabel('New status').selectOption('CLOSED');
  await nmvo.page.getByLabel('Classification').selectOption('FALSIFICATION_CONFIRMED');
  await nmvo.page.getByRole('button', { name: 'Change the status' }).click();
  expect(await nmvo.page.getByText('The status was changed.').isVisible(), 'the NMVO closed the alert');
  await nca.page.goto(`${nat.url}/ui/alerts?classification=FALSIFICATION_CONFIRMED`);
  expect(await nca.page.getByRole('link', { name: alertId }).isVisible(), 'the NCA sees the confirmed falsification');
  expect(!(await nca.page.goto(`${nat.url}/ui/alerts/${alertId}`)) || !(await nca.page.getByRole('button', { name: 'Change the status' }).count()), 'the NCA cannot change it');
  await eventually('the closure reaches the OBP', async () => {
    await op.goto(`${hub}/ui/alerts/${alertId}`);
    return (await op.content()).includes('FALSIFICATION_CONFIRMED');
  });

  // The NCA searches the trail and exports it.
  step('the NCA searches the audit trail and exports it');
  await nca.page.goto(`${nat.url}/ui/audit`);
  await nca.page.getByLabel('Product code', { exact: true }).fill(sample.product_code);
  await nca.page.getByLabel('Operation', { exact: true }).fill('verify');
  await nca.page.getByRole('button', { name: 'Search' }).click();
  expect(await nca.page.getByRole('table').isVisible(), 'the search found records');
  await checkPage(nca.page, 'audit-search');
  const [download] = await Promise.all([nca.page.waitForEvent('download'), nca.page.getByRole('link', { name: 'CSV' }).click()]);
  const csv = readFileSync(await download.path(), 'utf8');
  expect(csv.startsWith('seq,at,actor,role,location,operation,subject,return_code,request,result'), 'the CSV export has its header');
  expect(csv.includes(',verify,'), 'the CSV export has the verifications');

  // Slow answers open an incident by themselves; it shows on the status page and in the feed.
  step('an incident opened by slow answers');
  const inject = await api.request.post(`${nat.url}/admin/v1/latency`, {
    headers: { authorization: `Bearer ${demo.admin_token}` },
    data: { requests: 30, millis: 350 },
  });
  expect(inject.ok(), 'the latency is injected');
  const serial = sample.serials[1];
  await Promise.all(
    Array.from({ length: 6 }, (_, w) =>
      (async () => {
        for (let i = 0; i < 5; i += 1) {
          await api.request.post(`${nat.url}/v1/packs/verify`, {
            headers: { authorization: `Bearer ${phToken}` },
            data: { ...pack, serial, client_trx_id: `browser-${stamp}-slow-${w}-${i}` },
          });
        }
      })(),
    ),
  );
  const status = await (await context()).newPage();
  await eventually('the incident shows on the status page', async () => {
    await status.goto(`${nat.url}/status`);
    return (await status.content()).includes('Verifications slower than 300 ms');
  }, 90);
  expect(await status.getByText(/incident.* in progress/).isVisible(), 'the banner says an incident is in progress');
  await checkPage(status, 'status-incident');
  const feed = await (await api.request.get(`${nat.url}/v1/incidents/feed.atom`)).text();
  expect(feed.includes('Verifications slower than 300 ms'), 'the incident is in the Atom feed');
  const jsonFeed = await (await api.request.get(`${nat.url}/v1/incidents/feed.json`)).json();
  expect(jsonFeed.items.some((i) => i.title.includes('Verifications slower than 300 ms')), 'the incident is in the JSON feed');

  // The NMVO posts an incident of her own and resolves it.
  step('the NMVO opens and resolves an incident');
  await nmvo.page.goto(`${nat.url}/ui/incidents`);
  await checkPage(nmvo.page, 'incidents');
  await nmvo.page.getByLabel('Title', { exact: true }).fill('Planned maintenance tonight');
  await nmvo.page.getByLabel('What is known').fill('Verification pauses for five minutes at 02:00 UTC.');
  await nmvo.page.getByRole('button', { name: 'Open the incident' }).click();
  expect(await nmvo.page.getByText('The incident is open').isVisible(), 'the incident was opened');
  const form = nmvo.page.locator('form', { hasText: 'Planned maintenance tonight' });
  await form.getByLabel('Status').selectOption('resolved');
  await form.getByLabel('What is new').fill('Done.');
  await form.getByRole('button').click();
  expect(await nmvo.page.getByText('The incident was updated.').isVisible(), 'the incident was resolved');

  // Signing out ends the session.
  step('sign out');
  await pharmacy.page.goto(`${nat.url}/ui`);
  await pharmacy.page.getByRole('button', { name: 'Sign out' }).click();
  await pharmacy.page.goto(`${nat.url}/ui/alerts`);
  expect(pharmacy.page.url().includes('/ui/login'), 'signed out');
} catch (e) {
  if (!failures) console.log(`  FAILED: ${e.stack || e}`);
  failures = Math.max(failures, 1);
} finally {
  await browser.close();
}
console.log(failures ? `browser: ${failures} failure(s)` : 'browser: every check passed');
process.exit(failures ? 1 : 0);
