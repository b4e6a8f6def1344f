/**
 * The dashboard over real HTTP (no browser): its pages read real storage, its buttons put real jobs on real
 * queues, and a form without this browser's CSRF token, or from another origin, queues nothing.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { backupKeys } from '../../src/catalog/layout.js';
import { formatBytes } from '../../src/cli/format.js';
import { DASHBOARD_CSP } from '../../src/http/views.js';
import { silentLogger } from '../../src/logger.js';
import { lastSlotJobsKey, manualJobId, slotJobId } from '../../src/queues.js';
import { groupSchedules, startScheduler } from '../../src/scheduler/index.js';
import { slotAfter } from '../../src/scheduler/slots.js';
import { formToken, getWithHost, Session, startServe, textOf, unescapeHtml } from '../helpers/dashboard.js';
import { tempDir, testConfig, uniquePrefix } from '../helpers/env.js';
import { settled } from '../helpers/faults.js';
import { ctx, jobs } from '../helpers/jobs.js';
import { shell } from '../helpers/restore.js';
import { daemon, queues, useCleanup, workerFixture } from '../helpers/lifecycle.js';
import {
  createDatabase,
  createSampleSchema,
  dropDatabase,
  PG_HOST,
  PG_PORT,
  PG_USER,
  snapshotDatabase,
  uniqueName,
} from '../helpers/pg.js';

const execFileAsync = promisify(execFile);
const EVIL = '<img src=x onerror=alert(1)>';

/** The row of `database` in the overview's table, as text. */
function overviewRow(page: string, database: string): string {
  const m = new RegExp(`<tr data-database="${database}">([\\s\\S]*?)</tr>`).exec(page);
  if (!m) throw new Error(`no row for ${database} in the overview`);
  return textOf(m[1]!);
}

describe('dashboard over HTTP', () => {
  const defer = useCleanup();

  it('shows each database and its backups, and the by-hand command on the page restores the backup', async () => {
    const { db, env } = await workerFixture(defer, { rows: 300 });
    const backup = await jobs(env).backup({ database: db }, ctx());
    const serve = await startServe(env, defer);
    const browser = new Session(serve.url);

    const home = await browser.get('/');
    expect(home.status).toBe(200);
    expect(home.headers.get('content-security-policy')).toBe(DASHBOARD_CSP);
    expect(home.headers.get('x-frame-options')).toBe('DENY');
    const row = overviewRow(home.body, db);
    expect(row).toContain(db);
    expect(row).toContain(backup.id);
    expect(row).toContain(formatBytes(backup.bytes));
    expect(row).toContain('on time');
    expect(row).toMatch(/\b1 \d/); // stored: one backup, then its size

    const page = await browser.get(`/db/${db}`);
    expect(page.status).toBe(200);
    const backupRow = /<tr data-backup="([0-9a-f]{8})">([\s\S]*?)<\/tr>/.exec(page.body);
    expect(backupRow?.[1]).toBe(backup.id);
    expect(textOf(backupRow![2]!)).toContain('complete');
    expect(textOf(backupRow![2]!)).toContain('not drilled');
    const command = unescapeHtml(/<pre>([\s\S]*?)<\/pre>/.exec(backupRow![2]!)![1]!);
    expect(command).toBe(
      `createdb --owner=${PG_USER} NEW_DB\n` +
        `gunzip -c ${backup.archiveLocation} | psql -X -v ON_ERROR_STOP=1 -d NEW_DB`,
    );

    // What an operator would do with it: paste it, naming the new database.
    const copy = uniqueName('pgshelf_byhand');
    defer(() => dropDatabase(copy), { keepOnFailure: true });
    await shell(command.replaceAll('NEW_DB', copy));
    expect(await snapshotDatabase(copy)).toEqual(await snapshotDatabase(db));
  });

  it('an encrypted backup: the by-hand command decrypts with the configured identity, and restores it', async () => {
    const keys = await tempDir();
    defer(() => rm(keys, { recursive: true, force: true }));
    const identity = path.join(keys, 'age-identity.txt');
    const { stderr } = await execFileAsync('age-keygen', ['-o', identity]);
    const recipient = /Public key: (age1[0-9a-z]+)/.exec(stderr)![1]!;
    const { db, env } = await workerFixture(defer, {
      rows: 200,
      env: { PGSHELF_AGE_RECIPIENTS: recipient, PGSHELF_AGE_IDENTITY_FILE: identity },
    });
    const backup = await jobs(env).backup({ database: db }, ctx());
    expect(backup.archiveLocation).toMatch(/\.sql\.gz\.age$/);
    const serve = await startServe(env, defer);
    const page = await new Session(serve.url).get(`/db/${db}`);
    const command = unescapeHtml(/<pre>([\s\S]*?)<\/pre>/.exec(page.body)![1]!);
    expect(command).toBe(
      `createdb --owner=${PG_USER} NEW_DB\n` +
        `age -d -i ${identity} ${backup.archiveLocation} | gunzip -c | psql -X -v ON_ERROR_STOP=1 -d NEW_DB`,
    );
    const copy = uniqueName('pgshelf_byhand');
    defer(() => dropDatabase(copy), { keepOnFailure: true });
    await shell(command.replaceAll('NEW_DB', copy));
    expect(await snapshotDatabase(copy)).toEqual(await snapshotDatabase(db));
  });

  it('a POST without the CSRF token, with a wrong one, or from another origin is refused (403) and queues nothing; so is a cross-site bull-board action', async () => {
    const { db, env, queue } = await workerFixture(defer);
    const serve = await startServe(env, defer);
    const browser = new Session(serve.url);
    const token = formToken((await browser.get('/')).body);
    const action = `/db/${db}/backup`;

    const refusals = [
      await browser.post(action, { back: 'overview' }), // no token
      await browser.post(action, { _csrf: token.slice(0, -2) + 'xx', back: 'overview' }), // wrong token
      await new Session(serve.url).post(action, { _csrf: token, back: 'overview' }), // token without its cookie
      await browser.post(action, { _csrf: token }, 'https://evil.example'), // another site
    ];
    expect(refusals.map((r) => r.status)).toEqual([403, 403, 403, 403]);
    expect(refusals[0]!.body).toContain('Nothing was queued');
    const counts = await queue('backup').getJobCounts();
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(0);
    // bull-board's own actions too: a cross-site PUT is refused; its own page's is carried out.
    const pause = `${serve.url}/queues/api/queues/backup/pause`;
    const crossSite = await fetch(pause, { method: 'PUT', headers: { origin: 'https://evil.example' } });
    expect(crossSite.status).toBe(403);
    expect(await queue('backup').isPaused()).toBe(false);
    expect((await fetch(pause, { method: 'PUT', headers: { origin: serve.url } })).status).toBe(200);
    expect(await queue('backup').isPaused()).toBe(true);
    await queue('backup').resume();

    // The same form with its token queues one job, redirects back, and the flash names the job.
    const before = new Date();
    const ok = await browser.post(action, { _csrf: token, back: 'database' });
    expect(ok.status).toBe(303);
    expect(ok.headers.get('location')).toBe(`/db/${db}`);
    const jobs = await queue('backup').getJobs(['waiting']);
    expect(jobs).toHaveLength(1);
    const job = jobs[0]!;
    expect(job.data).toMatchObject({ database: db, storage: expect.stringMatching(/^file:\/\//) as unknown });
    // Stamped to the second inside the POST, which may take more than one second on a busy machine: any second
    // from the click to now, and the id made for it is the one manualJobId makes.
    const stamp = new RegExp(`^backup--${db}--now-(\\d{4})(\\d\\d)(\\d\\d)T(\\d\\d)(\\d\\d)(\\d\\d)Z$`).exec(
      job.id!,
    );
    expect(stamp, job.id).not.toBeNull();
    const [, y, mo, d, h, mi, sec] = stamp!.map(Number);
    const stampedAt = new Date(Date.UTC(y!, mo! - 1, d, h, mi, sec));
    expect(stampedAt.getTime()).toBeGreaterThanOrEqual(Math.floor(before.getTime() / 1000) * 1000);
    expect(stampedAt.getTime()).toBeLessThanOrEqual(Date.now());
    expect(manualJobId('backup', db, stampedAt)).toBe(job.id);
    const after = await browser.get(`/db/${db}`);
    expect(textOf(after.body)).toContain(`Backup of "${db}" queued as job ${job.id}.`);
    // Shown once.
    expect(textOf((await browser.get(`/db/${db}`)).body)).not.toContain('queued as job');

    // A second click while it waits joins it; so does a click while the scheduler's slot job waits.
    await browser.post(action, { _csrf: token, back: 'overview' });
    expect(textOf((await browser.get('/')).body)).toContain(`already queued as job ${job.id}: no second one`);
    expect((await queue('backup').getJobCounts('waiting')).waiting).toBe(1);
    const client = await queue('backup').client;
    expect(await client.hget(lastSlotJobsKey(env['PGSHELF_QUEUE_PREFIX']!, 'backup'), db)).toBe(job.id);
  });

  it('a click and a scheduled slot never queue the same backup twice, whichever comes first', async () => {
    const { db, env, queue } = await workerFixture(defer, { env: { PGSHELF_CATCH_UP: 'off' } });
    const config = testConfig(env);
    const scheduler = startScheduler({ config, logger: silentLogger() });
    defer(() => scheduler.stop(1000));
    await scheduler.ready;
    const [group] = groupSchedules(config.databases);
    const serve = await startServe(env, defer);
    const browser = new Session(serve.url);
    const token = formToken((await browser.get('/')).body);

    // The slot first: a click names its job.
    const slot = slotAfter(group!.expr, group!.timezone, Date.UTC(2026, 10, 26));
    expect(await scheduler.enqueueSlot(group!, slot)).toBe(1);
    const slotJob = slotJobId('backup', db, slot);
    await browser.post(`/db/${db}/backup`, { _csrf: token, back: 'database' });
    expect(textOf((await browser.get(`/db/${db}`)).body)).toContain(
      `Backup of "${db}" is already queued as job ${slotJob}: no second one was queued.`,
    );
    expect((await queue('backup').getJobs(['waiting'])).map((j) => j.id)).toEqual([slotJob]);

    // The click first (its slot job gone): the next slot merges into the click's job.
    await (await queue('backup').getJob(slotJob))!.remove();
    await browser.post(`/db/${db}/backup`, { _csrf: token });
    const [clicked] = await queue('backup').getJobs(['waiting']);
    expect(clicked?.id).toMatch(/--now-/);
    expect(await scheduler.enqueueSlot(group!, slotAfter(group!.expr, group!.timezone, slot.naive))).toBe(0);
    expect(scheduler.coalesced()).toBe(1);
    expect((await queue('backup').getJobs(['waiting'])).map((j) => j.id)).toEqual([clicked!.id]);
  });

  it('"restore into a new database" checks the name, and queues a restore of the chosen backup', async () => {
    const { db, env, queue } = await workerFixture(defer);
    const backup = await jobs(env).backup({ database: db }, ctx());
    const serve = await startServe(env, defer);
    const browser = new Session(serve.url);
    const page = await browser.get(`/db/${db}`);
    expect(page.body).toContain(`name="into" value="${db}_restored"`);
    const token = formToken(page.body);

    const bad = await browser.post(`/db/${db}/restore`, {
      _csrf: token,
      backup: backup.id,
      into: 'x; DROP DATABASE app',
    });
    expect(bad.status).toBe(400);
    expect(textOf(bad.body)).toContain(
      'Nothing was queued: "x; DROP DATABASE app" is not a plain database name',
    );
    expect(bad.body).toContain('value="x; DROP DATABASE app"'); // kept in the form, to correct
    const same = await browser.post(`/db/${db}/restore`, { _csrf: token, into: db });
    expect(same.status).toBe(400);
    expect((await queue('restore').getJobCounts('waiting')).waiting).toBe(0);

    const into = uniqueName('pgshelf_dash');
    const ok = await browser.post(`/db/${db}/restore`, {
      _csrf: token,
      backup: backup.id,
      into,
      back: 'database',
    });
    expect(ok.status).toBe(303);
    const [job] = await queue('restore').getJobs(['waiting']);
    expect(job?.data).toMatchObject({ database: db, backup: backup.id, into });
    expect((job?.data as { nonce: string }).nonce).toMatch(/^[0-9a-f]{24}$/);
    expect(textOf((await browser.get(`/db/${db}`)).body)).toContain(
      `Restore of "${db}" queued as job ${job!.id}. It creates "${into}" from backup ${backup.id}`,
    );
  });

  it('a database dropped from its server (servers: discovery) is flagged, keeps its backups, restore and drill, and has no "Back up now"', async () => {
    const db = uniqueName('pgshelf_gone');
    await createDatabase(db);
    defer(() => dropDatabase(db), { keepOnFailure: true });
    await createSampleSchema(db, 200);
    const source = await snapshotDatabase(db);
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'pgshelf.yaml');
    await writeFile(
      file,
      `servers:\n  - host: ${PG_HOST}\n    port: ${PG_PORT}\n    user: ${PG_USER}\n` +
        `    schedule: "0 2 * * *"\n    discover: { include: ["${db}"] }\n`,
    );
    const prefix = uniquePrefix();
    const queue = queues(prefix, defer);
    const env = {
      PGSHELF_CONFIG: file,
      PGSHELF_STORAGE: path.join(dir, 'backups'),
      PGSHELF_QUEUE_PREFIX: prefix,
      PGSHELF_LOG_LEVEL: 'info',
    };
    const backup = await jobs(env).backup({ database: db }, ctx());
    await dropDatabase(db);
    const server = `${PG_HOST}:${PG_PORT}`;
    const serve = await startServe(env, defer);
    const browser = new Session(serve.url);

    const home = await browser.get('/');
    const row = overviewRow(home.body, db);
    expect(row).toContain(`missing from the server ${server}, backups kept`);
    expect(row).toContain('MISSING');
    expect(row).toContain(backup.id);
    expect(home.body).not.toContain(`action="/db/${db}/backup"`);
    expect(home.body).toContain(`action="/db/${db}/drill"`);

    const page = await browser.get(`/db/${db}`);
    expect(page.status).toBe(200);
    const why = textOf(/<p id="missing">([\s\S]*?)<\/p>/.exec(page.body)![1]!);
    expect(why).toContain(`${db} is missing from the server ${server}`);
    expect(why).toContain('"Back up now" is not offered');
    expect(page.body).not.toContain(`action="/db/${db}/backup"`);
    // Its backup, with the commands that restore it by hand, and the restore form.
    const backupRow = /<tr data-backup="([0-9a-f]{8})">([\s\S]*?)<\/tr>/.exec(page.body)!;
    expect(backupRow[1]).toBe(backup.id);
    expect(unescapeHtml(/<pre>([\s\S]*?)<\/pre>/.exec(backupRow[2]!)![1]!)).toContain(
      `gunzip -c ${backup.archiveLocation} | psql`,
    );
    const token = formToken(page.body);

    // A backup button sent anyway (an older page) queues nothing, and says why.
    const forged = await browser.post(`/db/${db}/backup`, { _csrf: token, back: 'database' });
    expect(forged.status).toBe(303);
    expect(textOf((await browser.get(`/db/${db}`)).body)).toContain(
      `"${db}" no longer exists on ${server}: there is nothing to back up.`,
    );
    expect((await queue('backup').getJobCounts('waiting')).waiting).toBe(0);

    // "Restore into a new database" and "Drill now" queue jobs a real worker runs: the dropped database is back.
    const into = uniqueName('pgshelf_back');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const restore = await browser.post(`/db/${db}/restore`, { _csrf: token, backup: backup.id, into });
    expect(restore.status).toBe(303);
    const drill = await browser.post(`/db/${db}/drill`, { _csrf: token });
    expect(drill.status).toBe(303);
    const [restoreJob] = await queue('restore').getJobs(['waiting']);
    const [drillJob] = await queue('drill').getJobs(['waiting']);
    expect(restoreJob?.data).toMatchObject({ database: db, backup: backup.id, into });
    daemon('worker', env, defer);
    await settled(queue('restore'), restoreJob!.id!);
    expect(await snapshotDatabase(into)).toEqual(source);
    const drilled = await settled(queue('drill'), drillJob!.id!);
    expect(drilled.returnvalue).toMatchObject({ backupId: backup.id, verified: true, mismatches: [] });
  });

  it('a database named like markup in storage renders as text; unknown databases have no buttons', async () => {
    const { dir, env, queue } = await workerFixture(defer);
    const keys = backupKeys(EVIL, new Date('2026-11-01T02:00:00Z'), '1a2b3c4d');
    await mkdir(path.dirname(path.join(dir, keys.archive)), { recursive: true });
    await writeFile(path.join(dir, keys.archive), 'not a real archive');
    const serve = await startServe(env, defer);
    const browser = new Session(serve.url);

    const home = await browser.get('/');
    const dbPage = await browser.get(`/db/${encodeURIComponent(EVIL)}`);
    expect(dbPage.status).toBe(200);
    for (const body of [home.body, dbPage.body]) {
      expect(body).not.toContain('<img');
      expect(body).toContain('&lt;img src=x onerror=alert(1)&gt;');
    }
    expect(textOf(dbPage.body)).toContain('orphan');
    expect(dbPage.body).not.toContain(`/restore"`);
    // Its button URL, forged with a valid token: refused, since no worker here would take it.
    const forged = await browser.post(`/db/${encodeURIComponent(EVIL)}/backup`, {
      _csrf: formToken(home.body),
    });
    expect(forged.status).toBe(404);
    expect((await queue('backup').getJobCounts('waiting')).waiting).toBe(0);
  });

  it('without a token, only requests addressed to a loopback name are answered (DNS rebinding)', async () => {
    const { env } = await workerFixture(defer);
    const serve = await startServe(env, defer);
    const rebound = await getWithHost(`${serve.url}/`, `attacker.example:${serve.port}`);
    expect(rebound.status).toBe(403);
    expect(rebound.body).toContain('answers only requests addressed to a loopback name');
    expect((await getWithHost(`${serve.url}/queues/`, 'attacker.example')).status).toBe(403);
    // The JSON and the metrics say as much about the backups as the pages: the same rule.
    for (const route of ['/metrics', '/api/status', '/readyz']) {
      expect((await getWithHost(`${serve.url}${route}`, 'attacker.example')).status, route).toBe(403);
    }
    expect((await getWithHost(`${serve.url}/metrics`, `127.0.0.1:${serve.port}`)).status).toBe(200);
    // Liveness stays open: it says nothing but ok/why.
    expect((await getWithHost(`${serve.url}/healthz`, 'attacker.example')).status).toBe(200);
    const local = await fetch(`http://localhost:${serve.port}/`);
    expect(local.status).toBe(200);
  });

  it('with PGSHELF_HTTP_TOKEN, the dashboard and bull-board ask for it; bull-board lists the queues', async () => {
    const token = 'dashboard-test-token-0123456789';
    const { env } = await workerFixture(defer, { env: { PGSHELF_HTTP_TOKEN: token } });
    const serve = await startServe(env, defer);
    for (const p of ['/', '/queues/', '/queues/api/queues']) {
      expect((await fetch(serve.url + p)).status).toBe(401);
    }
    const basic = `Basic ${Buffer.from(`any:${token}`).toString('base64')}`;
    const board = new Session(serve.url, { authorization: basic });
    const ui = await board.get('/queues/');
    expect(ui.status).toBe(200);
    expect(ui.body).toContain('<base href="/queues/" />');
    expect(ui.headers.get('content-security-policy')).toContain("script-src 'self'");
    const api = await board.get('/queues/api/queues');
    const names = (JSON.parse(api.body) as { queues: { name: string }[] }).queues.map((q) => q.name);
    expect(names.sort()).toEqual(['backup', 'drill', 'prune', 'restore']);
    const dash = await board.get('/');
    expect(dash.status).toBe(200);
    // Behind a token, any Host is fine (a rebinding page cannot send the token).
    expect((await getWithHost(`${serve.url}/`, 'pgshelf.internal', { authorization: basic })).status).toBe(
      200,
    );
  });
});
