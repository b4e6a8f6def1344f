/**
 * The dashboard end to end in a real headless Chromium (Debian's `chromium`, driven by playwright-core): open
 * it, see the database, press "Back up now", and see the backup a real worker made appear on the page; then
 * "Drill now" and its verified result. The page must work without script and break none of its CSP.
 *
 * The screenshot goes to a temporary file; `UPDATE_SCREENSHOT=1` writes docs/dashboard.png (the README's).
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { listBackups } from '../../src/catalog/backups.js';
import { createStorage } from '../../src/storage/index.js';
import { startServe } from '../helpers/dashboard.js';
import { tempDir, testConfig } from '../helpers/env.js';
import { daemon, useCleanup, workerFixture } from '../helpers/lifecycle.js';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const SCREENSHOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs/dashboard.png');

/** Reloads `page` until `done` holds: the worker runs the job in its own time. */
async function reloadUntil(page: Page, done: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (await done()) return;
    if (Date.now() > deadline) throw new Error(`the page never showed ${what}`);
    await new Promise((r) => setTimeout(r, 500));
    await page.reload();
  }
}

async function launch(defer: ReturnType<typeof useCleanup>): Promise<BrowserContext> {
  const profile = await tempDir('pgshelf-chromium-');
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1360, height: 640 },
  });
  defer(async () => {
    await browser.close();
    await rm(profile, { recursive: true, force: true });
  });
  return browser;
}

describe('dashboard in a browser', () => {
  const defer = useCleanup();

  it('shows the database, and a backup made by "Back up now" appears on the page', async (ctx) => {
    if (!existsSync(CHROMIUM)) {
      const why = `no Chromium at ${CHROMIUM}: apt-get install chromium (CI does), or set CHROMIUM_PATH`;
      console.warn(`dashboard browser test skipped: ${why}`);
      ctx.skip(why);
    }
    const { db, env, queue } = await workerFixture(defer, { rows: 2000 });
    daemon('worker', env, defer);
    const serve = await startServe(env, defer);
    const browser = await launch(defer);
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`);
    });

    await page.goto(`${serve.url}/`);
    const row = page.locator(`tr[data-database="${db}"]`);
    await expect.poll(() => row.locator('td').first().innerText(), { timeout: 30_000 }).toBe(db);
    expect(await row.locator('td').nth(1).innerText()).toBe('never');

    // The button: a POST form, answered by a redirect back here with the job's id.
    await row.getByRole('button', { name: 'Back up now' }).click();
    await page.waitForURL(`${serve.url}/`);
    const flash = await page.locator('.flash.ok').innerText();
    const jobId = /queued as job (\S+)\.$/.exec(flash)?.[1];
    expect(jobId).toMatch(new RegExp(`^backup--${db}--now-`));

    await reloadUntil(
      page,
      async () => (await row.locator('td').nth(1).innerText()) !== 'never',
      'the backup',
    );
    const job = await queue('backup').getJob(jobId!);
    const made = job?.returnvalue as { id: string; bytes: number } | undefined;
    expect(made?.id).toMatch(/^[0-9a-f]{8}$/);
    // What the page says is what storage holds.
    const stored = await listBackups(createStorage(testConfig(env).storage), { manifestKey: undefined }, db);
    expect(stored.map((b) => b.id)).toEqual([made!.id]);
    expect(await row.locator('td').nth(1).innerText()).toContain(made!.id);
    expect(await row.locator('td').nth(4).innerText()).toContain('succeeded');
    expect(await row.locator('td').nth(5).innerText()).toBe('on time');

    // The database's page lists it; "Drill now" restores it elsewhere, and its result shows up.
    await row.getByRole('link', { name: db }).click();
    await page.waitForURL(`${serve.url}/db/${db}`);
    expect(await page.locator(`tr[data-backup="${made!.id}"] td`).nth(4).innerText()).toBe('complete');
    await page.locator('summary', { hasText: 'restore by hand' }).click();
    expect(await page.locator(`tr[data-backup="${made!.id}"] pre`).innerText()).toContain(
      `gunzip -c ${stored[0]!.archive!} | psql -X -v ON_ERROR_STOP=1 -d NEW_DB`,
    );
    await page.getByRole('button', { name: 'Drill now' }).click();
    await page.waitForURL(`${serve.url}/db/${db}`);
    expect(await page.locator('.flash.ok').innerText()).toMatch(/^Drill of ".+" queued as job drill--/);
    const drillCell = page.locator(`tr[data-backup="${made!.id}"] td`).nth(5);
    await reloadUntil(page, async () => (await drillCell.innerText()).startsWith('verified'), 'the drill');
    expect(await drillCell.innerText()).toMatch(/restore took [\d.]+ (ms|s)/);

    // The overview for the screenshot, with the flash of one more click.
    await page.goto(`${serve.url}/`);
    await reloadUntil(
      page,
      async () => (await row.locator('td').nth(7).innerText()).startsWith('verified'),
      'the drill',
    );
    await row.getByRole('button', { name: 'Back up now' }).click();
    await page.waitForURL(`${serve.url}/`);
    const shots = await tempDir();
    defer(() => rm(shots, { recursive: true, force: true }));
    const shot = path.join(shots, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    const png = await readFile(shot);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    if (process.env['UPDATE_SCREENSHOT'] === '1') {
      await mkdir(path.dirname(SCREENSHOT), { recursive: true });
      await copyFile(shot, SCREENSHOT);
    }

    // bull-board renders under /queues in the same browser (its scripts allowed by its own CSP).
    await page.goto(`${serve.url}/queues/`);
    await expect
      .poll(() => page.getByText('backup', { exact: true }).count(), { timeout: 30_000 })
      .toBeGreaterThan(0);

    // No CSP violation and no script error on any page (the stylesheet's hash matches, nothing else runs).
    expect(problems.filter((p) => !/fonts\.googleapis/.test(p))).toEqual([]);
  });
});
