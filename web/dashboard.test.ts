// The dashboard in headless Chromium against an appliance with a simulated rack, in this process.
// Builds the bundle first (and type-checks it), so the test exercises what the appliance serves.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { simSpecs, startTestAppliance, until, type TestAppliance } from '../test/support/appliance.js';
import { requirements, skipUnless } from '../test/support/environment.js';
import { ZERO_LATENCY } from '../modules/sim/sim.js';

const WEB = import.meta.dirname;
const ROOT = join(WEB, '..');
const SCREENSHOTS = join(WEB, 'screenshots');
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** Slow enough that a page can watch a node converge step by step, fast enough for a test. */
const WATCHABLE = { probeMs: 20, powerMs: 300, armMs: 50, bootStageMs: 250, drainMs: 100, lostAfterMs: 2_000 };

const skip = skipUnless('dashboard in Chromium', requirements({ commands: ['chromium'] }));

let browser: Browser;
let t: TestAppliance | undefined;
let page: Page | undefined;

beforeAll(async () => {
  if (skip) return;
  const node = process.execPath;
  execFileSync(node, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(WEB, 'tsconfig.json')], { stdio: 'inherit' });
  execFileSync(node, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', WEB, '--logLevel', 'warn'], { stdio: 'inherit', cwd: ROOT });
  mkdirSync(SCREENSHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
}, 180_000);

afterEach(async () => {
  await page?.close();
  page = undefined;
  await t?.close();
  t = undefined;
});

afterAll(async () => {
  await browser?.close();
});

async function openDashboard(appliance: TestAppliance, token = appliance.appliance.token): Promise<Page> {
  page = await browser.newPage({ viewport: { width: 1360, height: 820 } });
  page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
  await page.goto(appliance.appliance.url);
  await page.fill('input[name=token]', token);
  await page.click('button[type=submit]');
  return page;
}

/** The number the header shows for a state (or `total`). */
async function count(p: Page, state: string): Promise<number> {
  return Number(await p.textContent(`[data-count=${state}]`));
}

describe.skipIf(skip)('dashboard', () => {
  it('refuses a wrong token with the API\'s own words and keeps the dashboard closed', async () => {
    t = await startTestAppliance({ sim: { latencies: WATCHABLE } });
    const p = await openDashboard(t, 'not-the-token');
    const alert = p.getByRole('alert');
    await alert.waitFor();
    expect(await alert.textContent()).toBe("the bearer token is not this appliance's token");
    expect(await p.locator('[data-testid=counts]').count()).toBe(0);
    expect(await p.evaluate(() => sessionStorage.getItem('shoal.token'))).toBeNull();
    await p.screenshot({ path: join(SCREENSHOTS, 'login-refused.png') });
  });

  it('shows counts, a failed node\'s reason, and a node converging on an image set from the page', async () => {
    t = await startTestAppliance({ sim: { latencies: WATCHABLE }, engine: { retryBudget: 1, backoffBaseMs: 10 } });
    const { state, engine } = t.appliance;
    const nodes = await state.addNodes(simSpecs(12).map((spec) => ({ spec })), 'test');
    const broken = nodes[11]!;
    t.sim.inject(broken.id, { kind: 'power-on-fails', times: 100 });
    await Promise.all(nodes.map((n) => state.setDesired(n.id, { power: 'on', image: 'compute@1' }, 'test')));
    await until(t.appliance, () => engine.executor.phaseCounts().converged === 11 && engine.executor.phaseCounts().failed === 1, 30_000, '11 converged, 1 failed');

    const p = await openDashboard(t);
    await p.waitForFunction(() => document.querySelector('[data-count=converged]')?.textContent === '11');
    expect(await count(p, 'total')).toBe(12);
    expect(await count(p, 'failed')).toBe(1);
    expect(await count(p, 'converging')).toBe(0);
    expect(await p.locator('.row[data-state=failed]').getAttribute('data-node')).toBe(broken.name);

    // Label selector filter, as the API reads selectors: simSpecs puts ten nodes a rack.
    await p.fill('input[name=selector]', 'rack=r1');
    await p.waitForFunction(() => document.querySelector('[data-testid=shown]')?.textContent === '2 shown');
    await p.fill('input[name=selector]', '');
    await p.screenshot({ path: join(SCREENSHOTS, 'grid.png') });

    // The failed node shows the reason the engine holds it with.
    await p.click(`.row[data-node=${broken.name}] a`);
    const reason = (await t.api('GET', `/api/v1/nodes/${broken.name}`)).body.reason as string;
    expect(reason).toMatch(/power\.on failed/);
    expect(await p.locator('[data-testid=reason]').textContent()).toBe(reason);
    expect(await p.locator('[data-testid=bmc]').textContent()).toBe(`sim://bmc-n11`);

    // A selection from the grid: n0002 gets compute@3, but its next boot hangs, so it stays on
    // run.boot (300 s timeout) and the page shows the step under way and the image still to come.
    const hanging = nodes[1]!;
    t.sim.inject(hanging.id, { kind: 'boot-hangs', times: 1 });
    await p.click('a[href="#/"]');
    await p.check(`.row[data-node=${hanging.name}] input[type=checkbox]`);
    await p.selectOption('.selection-bar select[name=image-mode]', 'set');
    await p.fill('.selection-bar input[name=image]', 'compute@3');
    await p.click('.selection-bar button[type=submit]');
    const dialog = p.getByRole('dialog');
    expect(await dialog.locator('.changes li').allTextContents()).toEqual(['image: compute@1 → compute@3']);
    await dialog.getByRole('button', { name: 'Set desired state' }).click();
    await dialog.getByText('Updated 1 of 1 node.').waitFor();
    await dialog.getByRole('button', { name: 'Close' }).click();
    await p.locator(`.row[data-node=${hanging.name}] .c-image .diff`).getByText('compute@1 → compute@3').waitFor();
    await p.click(`.row[data-node=${hanging.name}] a`);
    await p.locator('[data-testid=plan] .explain li.current').getByText('run.boot').waitFor({ timeout: 20_000 });
    expect(await p.locator('[data-testid=plan] .step.current text').first().textContent()).toBe('run.boot');
    expect(await p.locator('.facets tr.differs').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-facet')))).toEqual(['run', 'image']);
    await p.screenshot({ path: join(SCREENSHOTS, 'node-converging.png'), fullPage: true });

    // n0001 from its own page: frozen, its image changed (the plan waits), thawed, converged; all
    // without reloading the page.
    const target = nodes[0]!;
    await p.evaluate((id) => {
      (window as unknown as { sameDocument: boolean }).sameDocument = true;
      location.hash = `#/node/${id}`;
    }, target.id);
    await p.locator('[data-testid=observed-image]').getByText('compute@1').waitFor();
    await p.click('.node-view .buttons button:text-is("Freeze")');
    await dialog.getByRole('button', { name: 'Freeze' }).click();
    await dialog.getByText('Froze 1 of 1 node.').waitFor();
    await dialog.getByRole('button', { name: 'Close' }).click();
    await p.selectOption('.node-view select[name=image-mode]', 'set');
    await p.fill('.node-view input[name=image]', 'compute@2');
    await p.click('.desired-form button[type=submit]');
    expect(await dialog.locator('.changes li').allTextContents()).toEqual(['image: compute@1 → compute@2']);
    await dialog.getByRole('button', { name: 'Set desired state' }).click();
    await dialog.getByText('Updated 1 of 1 node.').waitFor();
    await dialog.getByRole('button', { name: 'Close' }).click();
    await p.locator('[data-testid=node-state]').getByText('frozen').waitFor();
    await p.locator('[data-testid=plan] .explain li').first().waitFor();
    expect(state.observed(target.id).image?.value).toBe('compute@1');
    await p.click('.node-view .buttons button:text-is("Thaw")');
    await dialog.getByRole('button', { name: 'Thaw' }).click();
    await dialog.getByText('Thawed 1 of 1 node.').waitFor();
    await dialog.getByRole('button', { name: 'Close' }).click();
    await p.locator('[data-testid=observed-image]').getByText('compute@2').waitFor({ timeout: 20_000 });
    await p.locator('[data-testid=node-state]').getByText('converged').waitFor();
    expect(state.observed(target.id).image?.value).toBe('compute@2');
    expect(await p.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(true);
    expect(await p.locator('[data-testid=boot-stages] li.seen').count()).toBe(5);
    await p.getByText('Nothing to do').waitFor();
  }, 120_000);

  it('shows API errors as they are: a bad inventory row, and no image store module', async () => {
    t = await startTestAppliance({ sim: { latencies: WATCHABLE } });
    const p = await openDashboard(t);
    await p.locator('[data-testid=counts]').waitFor();
    await p.click('a[href="#/import"]');
    await p.fill('textarea[name=inventory]', 'nodes:\n  - name: c001\n    macs: [52:54:00:00:10:01]\n    bmc: sim://c001\n  - name: c002\n    bmc: sim://c002\n');
    await p.click('.import-view button');
    await p.getByRole('dialog').getByRole('button', { name: 'Import' }).click();
    const problem = await t.api('POST', '/api/v1/inventory', 'nodes:\n  - name: c001\n    macs: [52:54:00:00:10:01]\n    bmc: sim://c001\n  - name: c002\n    bmc: sim://c002\n');
    expect(problem.status).toBe(400);
    const shown = await p.getByRole('dialog').getByRole('alert').textContent();
    expect(shown).toContain(problem.body.detail);
    expect(t.appliance.state.size).toBe(0);
    await p.getByRole('dialog').getByRole('button', { name: 'Close' }).click();

    await p.click('a[href="#/images"]');
    expect(await p.locator('[data-testid=images-message]').textContent()).toBe('No image store module loaded.');
  });

  it('stays responsive while 10,000 simulated nodes converge', async () => {
    t = await startTestAppliance({ sim: { latencies: ZERO_LATENCY } });
    const { state, engine } = t.appliance;
    const nodes = await state.addNodes(simSpecs(10_000).map((spec) => ({ spec })), 'test');
    const p = await openDashboard(t);
    await p.waitForFunction(() => document.querySelector('[data-count=total]')?.textContent === '10000', undefined, { timeout: 60_000 });
    // Frame times as the page sees them: the gaps between animation frames while it follows the stream.
    await p.evaluate(() => {
      const w = window as unknown as { frames_: number[] };
      w.frames_ = [];
      let last = performance.now();
      const tick = (now: number) => {
        w.frames_.push(now - last);
        last = now;
        requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    });
    const started = Date.now();
    await Promise.all(nodes.map((n) => state.setDesired(n.id, { power: 'on', image: 'compute@1' }, 'test')));
    await until(t.appliance, () => engine.executor.phaseCounts().converged === 10_000, 120_000, '10,000 converged');
    const convergedAt = Date.now();
    await p.waitForFunction(() => document.querySelector('[data-count=converged]')?.textContent === '10000', undefined, { timeout: 60_000 });
    const shownAt = Date.now();
    const frames = (await p.evaluate(() => (window as unknown as { frames_: number[] }).frames_)).sort((a, b) => a - b);
    const at = (q: number) => frames[Math.min(frames.length - 1, Math.floor(q * frames.length))]!;
    console.log(
      `dashboard, 10,000 nodes converging: ${frames.length} frames over ${((shownAt - started) / 1000).toFixed(1)} s; ` +
        `frame p50 ${at(0.5).toFixed(1)} ms, p95 ${at(0.95).toFixed(1)} ms, max ${frames.at(-1)!.toFixed(1)} ms; ` +
        `appliance converged after ${((convergedAt - started) / 1000).toFixed(1)} s, page showed it ${shownAt - convergedAt} ms later`,
    );
    await p.screenshot({ path: join(SCREENSHOTS, 'grid-10000.png') });
    // Generous: a page that stops painting while it digests the stream fails this.
    expect(at(0.95)).toBeLessThan(200);
  }, 300_000);
});
