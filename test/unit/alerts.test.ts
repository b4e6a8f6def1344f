import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { alertTargets, pingUrl } from '../../src/alerts/index.js';
import { alertBody, alertReason, signBody, type AlertInput } from '../../src/alerts/payload.js';
import { ConfigError } from '../../src/errors.js';
import { loadConfig, resolveTarget } from '../../src/config/index.js';
import { maskSecretUrl } from '../../src/url.js';

const SECRET = 'a-webhook-secret-of-some-length';

const failed: AlertInput = {
  event: 'backup.failed',
  database: 'app',
  job: { id: 'backup--app--20261126T020000', kind: 'backup', attempt: 3 },
  reason: 'pg_dump failed:\npg_dump: error: FATAL:  database "app" does not exist',
  occurredAt: new Date('2026-11-26T02:01:12.345Z'),
  startedAt: new Date('2026-11-26T02:01:12.101Z'),
  finishedAt: new Date('2026-11-26T02:01:12.345Z'),
};

describe('alert bodies', () => {
  it('one JSON body: the fields, and a readable text for chat webhooks', () => {
    const body = JSON.parse(alertBody(failed, 'worker-1')) as Record<string, unknown>;
    expect(body).toEqual({
      event: 'backup.failed',
      database: 'app',
      job: { id: 'backup--app--20261126T020000', kind: 'backup', attempt: 3 },
      reason: failed.reason,
      occurredAt: '2026-11-26T02:01:12.345Z',
      startedAt: '2026-11-26T02:01:12.101Z',
      finishedAt: '2026-11-26T02:01:12.345Z',
      host: 'worker-1',
      text:
        'pgshelf: backup of "app" failed (job backup--app--20261126T020000, attempt 3): pg_dump failed: ' +
        'pg_dump: error: FATAL:  database "app" does not exist',
    });
    const overdue = JSON.parse(
      alertBody({
        event: 'backup.overdue',
        database: 'app',
        job: null,
        reason: null,
        occurredAt: new Date('2026-11-26T03:00:00Z'),
        slot: {
          local: '2026-11-26T02:00:00',
          at: new Date('2026-11-26T01:00:00Z'),
          timezone: 'Europe/Paris',
        },
        lastSuccess: null,
        graceMinutes: 120,
      }),
    ) as Record<string, unknown>;
    expect(overdue).toMatchObject({
      job: null,
      slot: { local: '2026-11-26T02:00:00', at: '2026-11-26T01:00:00.000Z', timezone: 'Europe/Paris' },
      lastSuccess: null,
      text:
        'pgshelf: backup of "app" is overdue: no successful backup of the 2026-11-26T02:00:00 slot ' +
        '(Europe/Paris) plus 120 min grace; no successful backup yet',
    });
    expect(overdue).not.toHaveProperty('startedAt');
  });

  it('reasons lose the row data a server message quotes, and keep the tail of a long stderr', () => {
    const reason = alertReason(
      'psql failed:\nERROR:  duplicate key value violates unique constraint "u_email"\n' +
        'DETAIL:  Key (email)=(secret@example.com) already exists.\n' +
        'CONTEXT:  COPY users, line 3: "3\tsecret@example.com"',
    );
    expect(reason).not.toContain('secret@example.com');
    expect(reason).toContain('Key (email)=(value not shown)');
    const long = alertReason(
      ['pg_dump failed:', ...Array.from({ length: 500 }, (_, i) => `line ${i}`)].join('\n'),
    );
    expect(long.length).toBeLessThanOrEqual(2000);
    expect(long.startsWith('pg_dump failed:\n…\n')).toBe(true);
    expect(long.endsWith('line 499')).toBe(true);
  });

  it("the README's openssl line prints the X-Pgshelf-Signature of a body", async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('\n### Alerts\n'));
    const line = /```sh\n(echo "sha256=\$\(openssl dgst [^\n]+)\n```/.exec(section)?.[1];
    expect(line).toBeDefined();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-sig-'));
    try {
      const body = alertBody({ ...failed, database: 'cafés "ünïcode"' });
      await writeFile(path.join(dir, 'body.json'), body);
      const out = execFileSync('bash', ['-c', line!], {
        cwd: dir,
        env: { PATH: process.env.PATH, PGSHELF_WEBHOOK_SECRET: SECRET },
      }).toString();
      expect(out.trim()).toBe(signBody(body, SECRET));
      expect(signBody(body, SECRET)).toMatch(/^sha256=[0-9a-f]{64}$/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('ping URLs in the healthchecks.io style, query string last; logged URLs lose their path', () => {
    expect(pingUrl('https://hc-ping.com/abc', 'start')).toBe('https://hc-ping.com/abc/start');
    expect(pingUrl('https://hc-ping.com/abc/', 'fail')).toBe('https://hc-ping.com/abc/fail');
    expect(pingUrl('https://hc.example/ping/key/slug?create=1', 'start')).toBe(
      'https://hc.example/ping/key/slug/start?create=1',
    );
    expect(pingUrl('https://hc-ping.com/abc', 'success')).toBe('https://hc-ping.com/abc');
    expect(maskSecretUrl('https://hooks.slack.com/services/T0/B0/XXXX')).toBe('https://hooks.slack.com/***');
    expect(maskSecretUrl('https://user:pw@alerts.example.com:8443/x?token=1')).toBe(
      'https://user:***@alerts.example.com:8443/***',
    );
    expect(maskSecretUrl('http://127.0.0.1:9000')).toBe('http://127.0.0.1:9000');
  });
});

async function withFile(yaml: string) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-cfg-'));
  const file = path.join(dir, 'databases.yaml');
  await writeFile(file, yaml);
  return file;
}

describe('alert settings', () => {
  it('PGSHELF_WEBHOOK_URL: comma-separated http(s) URLs; PGSHELF_PING_URL is the default database check', () => {
    const c = loadConfig({
      POSTGRES_DB: 'app',
      PGSHELF_WEBHOOK_URL: 'https://a.example/hook , http://b.example:8080/x,https://a.example/hook',
      PGSHELF_WEBHOOK_SECRET: SECRET,
      PGSHELF_PING_URL: 'https://hc-ping.com/abc',
    });
    expect(c.databases[0]!.alerts).toEqual({
      webhooks: ['https://a.example/hook', 'http://b.example:8080/x'],
      pings: ['https://hc-ping.com/abc'],
    });
    expect(c.webhookSecret).toBe(SECRET);
    // Another database (--db) shares the webhooks, not the default database's check.
    expect(resolveTarget(c, 'other').alerts).toEqual({
      webhooks: c.databases[0]!.alerts.webhooks,
      pings: [],
    });
  });

  it('refuses what is not an http(s) URL, with the password masked, and a short secret without printing it', () => {
    expect(() =>
      loadConfig({ POSTGRES_DB: 'app', PGSHELF_WEBHOOK_URL: 'https://ok.example/x,ftp://u:pw@h/x' }),
    ).toThrow(
      /PGSHELF_WEBHOOK_URL=.*"ftp:\/\/u:\*\*\*@h\/x" is not an http\(s\) URL.*e\.g\. PGSHELF_WEBHOOK_URL=https:/,
    );
    expect(() => loadConfig({ POSTGRES_DB: 'app', PGSHELF_PING_URL: 'hc-ping.com/abc' })).toThrow(
      /PGSHELF_PING_URL="hc-ping\.com\/abc" is invalid: expected an http\(s\) URL/,
    );
    let err: unknown;
    try {
      loadConfig({ POSTGRES_DB: 'app', PGSHELF_WEBHOOK_SECRET: 'short-secret' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(
      /PGSHELF_WEBHOOK_SECRET is invalid: it has 12 characters; use at least 16/,
    );
    expect((err as Error).message).not.toContain('short-secret');
  });

  it('YAML: webhook_url adds to the environment and to defaults (a URL, a list, or comma-separated); ping_url is per database', async () => {
    const file = await withFile(`
defaults:
  webhook_url: https://team.example/hook
databases:
  - name: app
    webhook_url:
      - https://app-a.example/hook
      - https://app-b.example/hook
    ping_url: https://hc-ping.com/app
  - name: analytics
`);
    const c = loadConfig({ PGSHELF_CONFIG: file, PGSHELF_WEBHOOK_URL: 'https://all.example/hook' });
    expect(c.databases.map((d) => [d.name, d.alerts])).toEqual([
      [
        'app',
        {
          webhooks: [
            'https://all.example/hook',
            'https://team.example/hook',
            'https://app-a.example/hook',
            'https://app-b.example/hook',
          ],
          pings: ['https://hc-ping.com/app'],
        },
      ],
      ['analytics', { webhooks: ['https://all.example/hook', 'https://team.example/hook'], pings: [] }],
    ]);
  });

  it("YAML: a database found by a servers: entry gets that entry's webhook_url", async () => {
    const file = await withFile(`
databases:
  - name: app
servers:
  - host: pg2.internal
    discover: { include: ["shop_*"] }
    webhook_url: https://pg2-team.example/hook
`);
    const c = loadConfig({ PGSHELF_CONFIG: file, PGSHELF_WEBHOOK_URL: 'https://all.example/hook' });
    expect(alertTargets(c, 'shop_eu')).toEqual({
      webhooks: ['https://all.example/hook', 'https://pg2-team.example/hook'],
      pings: [],
    });
    expect(alertTargets(c, 'app')).toEqual({ webhooks: ['https://all.example/hook'], pings: [] });
    expect(alertTargets(c, 'other')).toEqual({ webhooks: ['https://all.example/hook'], pings: [] });
  });

  it('YAML: a bad URL names the file, line and entry; ping_url in defaults is refused', async () => {
    const bad = await withFile(
      'databases:\n  - name: app\n    webhook_url: [https://ok.example, "ftp.example.com/hook"]\n',
    );
    expect(() => loadConfig({ PGSHELF_CONFIG: bad })).toThrow(
      /databases\.yaml:3: databases\[0\]\.webhook_url\[1\]: "ftp\.example\.com\/hook" is invalid: expected an http\(s\) URL/,
    );
    const shared = await withFile(
      'defaults:\n  ping_url: https://hc-ping.com/x\ndatabases:\n  - name: app\n',
    );
    expect(() => loadConfig({ PGSHELF_CONFIG: shared })).toThrow(/unknown key "ping_url" in "defaults"/);
  });
});
