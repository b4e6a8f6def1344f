import { describe, expect, it } from 'vitest';
import type { ListedBackup } from '../../src/catalog/backups.js';
import { checkNewDatabaseName, suggestedRestoreName } from '../../src/http/actions.js';
import {
  csrfKeys,
  csrfToken,
  csrfTokenValid,
  newCsrfCookieValue,
  readCookie,
  sameOrigin,
} from '../../src/http/csrf.js';
import { escapeHtml, markup } from '../../src/http/html.js';
import {
  DASHBOARD_CSP,
  databasePage,
  overviewPage,
  restoreByHand,
  type PageChrome,
} from '../../src/http/views.js';
import type { DatabaseStatus, StatusReport } from '../../src/monitor/index.js';

const now = new Date('2026-11-26T06:00:00Z');
const chrome: PageChrome = { csrf: 'tok-123', now, collectedAt: now };
const EVIL = '<img src=x onerror=alert(1)>';

function database(name: string, overrides: Partial<DatabaseStatus> = {}): DatabaseStatus {
  return {
    name,
    configured: true,
    schedule: { schedule: '0 2 * * *', timezone: 'Europe/Paris', drillSchedule: null },
    lastSuccess: {
      id: '1a2b3c4d',
      startedAt: '2026-11-26T01:00:00.000Z',
      finishedAt: '2026-11-26T01:00:03.000Z',
      durationMs: 3000,
      bytes: 5 * 1024 * 1024,
      ageMs: 5 * 3600_000,
    },
    lastAttempt: {
      status: 'succeeded',
      id: '1a2b3c4d',
      at: '2026-11-26T01:00:03.000Z',
      error: null,
      job: null,
    },
    overdue: {
      overdue: false,
      dueSlot: { at: '2026-11-26T01:00:00.000Z', local: '2026-11-26T02:00:00' },
      missedSlot: null,
      nextSlot: { at: '2026-11-27T01:00:00.000Z', local: '2026-11-27T02:00:00' },
    },
    lastDrill: {
      backupId: '1a2b3c4d',
      at: '2026-11-26T03:00:00.000Z',
      verified: true,
      restoreMs: 4200,
      detail: null,
    },
    lastVerifiedDrill: null,
    stored: { count: 7, bytes: 35 * 1024 * 1024, orphans: 0 },
    problems: [],
    failing: false,
    missingFrom: null,
    ...overrides,
  };
}

function report(databases: DatabaseStatus[]): StatusReport {
  return {
    generatedAt: now.toISOString(),
    storage: 'file:///srv/backups',
    databases,
    queues: { ok: true, counts: {}, workers: [] },
    servers: [],
  };
}

function listed(id: string, overrides: Partial<ListedBackup> = {}): ListedBackup {
  return {
    id,
    database: 'app',
    startedAt: '2026-11-26T01:00:00.000Z',
    bytes: 1536,
    durationMs: 812,
    verified: true,
    verifiedAt: '2026-11-26T03:00:00.000Z',
    drillRestoreMs: 2500,
    slot: null,
    status: 'complete',
    archive: `/srv/backups/app/2026/11/app_20261126T010000Z_${id}.sql.gz`,
    manifest: `/srv/backups/app/2026/11/app_20261126T010000Z_${id}.manifest.json`,
    problem: null,
    ...overrides,
  };
}

describe('html', () => {
  it('escapes every interpolated value, and joins arrays of safe fragments', () => {
    expect(escapeHtml(`<a href="x" onclick='y'>&\``)).toBe(
      '&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&#96;',
    );
    const items = ['<b>', 'c&d'].map((t) => markup`<li>${t}</li>`);
    expect(markup`<ul>${items}</ul>`.value).toBe('<ul><li>&lt;b&gt;</li><li>c&amp;d</li></ul>');
    expect(markup`${null}${undefined}${false}${0}`.value).toBe('0');
  });
});

describe('pages', () => {
  it('the overview shows each database with its last backup, schedule, drill and stored figures', () => {
    const page = overviewPage(report([database('app')]), chrome);
    expect(page).toContain('<a href="/db/app">app</a>');
    expect(page).toContain('5 h 0 min ago'); // the last backup's age
    expect(page).toContain('5.0 MiB');
    expect(page).toContain('3.0 s');
    expect(page).toContain('on time');
    expect(page).toContain('2026-11-27 02:00:00 Europe/Paris');
    expect(page).toContain('restore took 4.2 s');
    expect(page).toContain('35.0 MiB');
    expect(page).toContain('action="/db/app/backup"');
    expect(page).toContain('action="/db/app/drill"');
    expect(page).toContain('name="_csrf" value="tok-123"');
    expect(page).not.toMatch(/<script/i);
    // Nothing to drill yet: no such button.
    const empty = overviewPage(
      report([database('app', { stored: { count: 0, bytes: 0, orphans: 0 } })]),
      chrome,
    );
    expect(empty).toContain('action="/db/app/backup"');
    expect(empty).not.toContain('action="/db/app/drill"');
  });

  it('an overdue database and a failed attempt are flagged, with the problem in words', () => {
    const db = database('app', {
      overdue: {
        overdue: true,
        dueSlot: { at: '2026-11-26T01:00:00.000Z', local: '2026-11-26T02:00:00' },
        missedSlot: { at: '2026-11-26T01:00:00.000Z', local: '2026-11-26T02:00:00' },
        nextSlot: { at: '2026-11-27T01:00:00.000Z', local: '2026-11-27T02:00:00' },
      },
      lastAttempt: {
        status: 'failed',
        id: 'ffffffff',
        at: '2026-11-26T01:00:09.000Z',
        error: 'pg_dump: boom',
        job: null,
      },
      problems: ['overdue: no successful backup since the 2026-11-26T02:00:00 (Europe/Paris) slot'],
    });
    const page = overviewPage(report([db]), chrome);
    expect(page).toContain('OVERDUE');
    expect(page).toContain('pg_dump: boom');
    expect(page).toContain('<ul class="problems"><li><b>app</b>: overdue: no successful backup since');
  });

  it('a database named like markup (storage can be written by others) renders as text, everywhere', () => {
    const db = database(EVIL, { problems: [`problem of ${EVIL}`] });
    const pages = [
      overviewPage(report([db]), chrome),
      databasePage(
        {
          name: EVIL,
          status: db,
          backups: [listed('1a2b3c4d', { database: EVIL, archive: `/srv/${EVIL}.sql.gz`, problem: EVIL })],
          owner: 'app',
          restoreInto: EVIL,
        },
        chrome,
      ),
    ];
    for (const page of pages) {
      expect(page).not.toContain('<img');
      expect(page).toContain('&lt;img src=x onerror=alert(1)&gt;');
    }
    // In a link it is percent-encoded.
    expect(pages[0]).toContain(`href="/db/${encodeURIComponent(EVIL)}"`);
  });

  it('the database page lists each backup with its drill and the commands that restore it by hand', () => {
    const page = databasePage(
      {
        name: 'app',
        status: database('app'),
        backups: [
          listed('1a2b3c4d'),
          listed('99999999', { status: 'orphan', verified: null, verifiedAt: null }),
        ],
        owner: 'app',
        restoreInto: 'app_restored',
      },
      chrome,
    );
    expect(page).toContain('<code>1a2b3c4d</code>');
    expect(page).toContain('1.5 KiB');
    expect(page).toContain('812 ms');
    expect(page).toContain('restore took 2.5 s');
    expect(page).toContain(
      'createdb --owner=app NEW_DB\ngunzip -c /srv/backups/app/2026/11/app_20261126T010000Z_1a2b3c4d.sql.gz | psql -X -v ON_ERROR_STOP=1 -d NEW_DB',
    );
    expect(page).toContain('not drilled');
    expect(page).toContain('<option value="latest">latest (1a2b3c4d)</option>');
    expect(page).toContain('name="into" value="app_restored"');
    expect(page).toContain('action="/db/app/restore"');
  });

  it("the CSP forbids scripts and allows only the page's own stylesheet", () => {
    expect(DASHBOARD_CSP).toMatch(/^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+';/);
    expect(DASHBOARD_CSP).toContain("frame-ancestors 'none'");
    expect(DASHBOARD_CSP).not.toContain('script-src');
  });
});

describe('restore by hand', () => {
  it('a folder archive, an S3 object (with its endpoint), an encrypted one; names are shell-quoted', () => {
    expect(restoreByHand({ location: '/srv/b/app.sql.gz', owner: 'app' })).toBe(
      'createdb --owner=app NEW_DB\ngunzip -c /srv/b/app.sql.gz | psql -X -v ON_ERROR_STOP=1 -d NEW_DB',
    );
    expect(
      restoreByHand({
        location: 's3://bucket/pg/app.sql.gz',
        owner: 'app',
        s3Endpoint: 'http://minio:9000',
        into: 'new_db',
      }),
    ).toBe(
      'createdb --owner=app new_db\naws --endpoint-url http://minio:9000 s3 cp s3://bucket/pg/app.sql.gz - | ' +
        'gunzip -c | psql -X -v ON_ERROR_STOP=1 -d new_db',
    );
    expect(restoreByHand({ location: "/srv/it's here.sql.gz.age", owner: 'o w' })).toBe(
      "createdb --owner='o w' NEW_DB\nage -d -i IDENTITY_FILE '/srv/it'\\''s here.sql.gz.age' | gunzip -c | " +
        'psql -X -v ON_ERROR_STOP=1 -d NEW_DB',
    );
    expect(
      restoreByHand({
        location: 's3://b/app.sql.gz.age',
        owner: 'app',
        identityFile: '/etc/pgshelf/age.txt',
      }),
    ).toBe(
      'createdb --owner=app NEW_DB\naws s3 cp s3://b/app.sql.gz.age - | age -d -i /etc/pgshelf/age.txt | ' +
        'gunzip -c | psql -X -v ON_ERROR_STOP=1 -d NEW_DB',
    );
  });
});

describe('restore form', () => {
  it('refuses names PostgreSQL would not take plainly, saying why with an example', () => {
    expect(checkNewDatabaseName('app_0325', 'app')).toBeUndefined();
    expect(checkNewDatabaseName('', 'app')).toBe(
      'give the name of the database to create, e.g. app_restored',
    );
    expect(checkNewDatabaseName('app', 'app')).toMatch(/is the database being restored/);
    expect(checkNewDatabaseName('x; DROP DATABASE app', 'app')).toMatch(/is not a plain database name/);
    expect(checkNewDatabaseName('1abc', 'app')).toMatch(/starting with a letter/);
    expect(checkNewDatabaseName('a'.repeat(64), 'app')).toMatch(
      /64 bytes long; PostgreSQL names hold at most 63/,
    );
    expect(suggestedRestoreName('shop eu')).toBe('shop_eu_restored');
    expect(Buffer.byteLength(suggestedRestoreName('é'.repeat(60)))).toBeLessThanOrEqual(63);
  });
});

describe('csrf', () => {
  it('a token is valid for its own cookie only, under its own secret', () => {
    const keys = csrfKeys('a-token-of-sufficient-length');
    const cookie = newCsrfCookieValue();
    const token = csrfToken(keys, cookie);
    expect(csrfTokenValid(keys, cookie, token)).toBe(true);
    expect(csrfTokenValid(keys, newCsrfCookieValue(), token)).toBe(false);
    expect(csrfTokenValid(csrfKeys(undefined), cookie, token)).toBe(false);
    expect(csrfTokenValid(keys, cookie, '')).toBe(false);
    expect(csrfTokenValid(keys, cookie, undefined)).toBe(false);
    expect(csrfTokenValid(keys, undefined, token)).toBe(false);
    // Derived from PGSHELF_HTTP_TOKEN: the same across restarts and replicas.
    expect(csrfToken(csrfKeys('a-token-of-sufficient-length'), cookie)).toBe(token);
  });

  it('reads its cookie among others, and refuses malformed values', () => {
    expect(readCookie('a=1; pgshelf_csrf=abcdefghijklmnopqrstuvwx; b=2', 'pgshelf_csrf')).toBe(
      'abcdefghijklmnopqrstuvwx',
    );
    expect(readCookie('pgshelf_csrf=<script>', 'pgshelf_csrf')).toBeUndefined();
    expect(readCookie(undefined, 'pgshelf_csrf')).toBeUndefined();
  });

  it('same origin: Origin, else Referer, must name the host; neither sent is undecided', () => {
    expect(sameOrigin({ host: '127.0.0.1:9187', origin: 'http://127.0.0.1:9187' })).toBe(true);
    expect(sameOrigin({ host: '127.0.0.1:9187', origin: 'https://evil.example' })).toBe(false);
    expect(sameOrigin({ host: '127.0.0.1:9187', origin: 'null' })).toBe(false);
    expect(sameOrigin({ host: '127.0.0.1:9187', referer: 'http://127.0.0.1:9187/db/app' })).toBe(true);
    expect(sameOrigin({ host: '127.0.0.1:9187', referer: 'http://127.0.0.1:9999/' })).toBe(false);
    expect(sameOrigin({ host: '127.0.0.1:9187' })).toBeUndefined();
  });
});
