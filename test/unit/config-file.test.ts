import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, resolveTarget } from '../../src/config/index.js';
import { describeConnectError } from '../../src/postgres/server.js';

async function withFile(yaml: string, env: Record<string, string> = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-cfg-'));
  const file = path.join(dir, 'databases.yaml');
  await writeFile(file, yaml);
  return { file, load: () => loadConfig({ PGSHELF_CONFIG: file, ...env }) };
}

const GOOD = `
defaults:
  host: db.internal
  user: backup
  password_env: BACKUP_PASSWORD
  timezone: Europe/Paris
  retention: { keep_last: 5, daily: 10 }
databases:
  - name: app
    schedule: "0 2 * * *"
    drill_schedule: "0 5 * * 0"
  - name: analytics
    host: analytics.internal
    port: 6543
    schedule: "30 3 * * *"
    timezone: America/New_York
    retention:
      monthly: 24
      min_keep: 5
`;

describe('PGSHELF_CONFIG', () => {
  it('lists databases with their own connection, schedule, time zone, retention and drills', async () => {
    const { load } = await withFile(GOOD, { BACKUP_PASSWORD: 's3cret' });
    const c = load();
    expect(c.defaultDatabase).toBeUndefined();
    expect(c.databases.map((d) => d.name)).toEqual(['app', 'analytics']);
    const [app, analytics] = c.databases;
    expect(app).toMatchObject({
      schedule: '0 2 * * *',
      drillSchedule: '0 5 * * 0',
      timezone: 'Europe/Paris',
      postgres: { host: 'db.internal', port: 5432, user: 'backup', password: 's3cret', database: 'app' },
      retention: { keepLast: 5, daily: 10, weekly: 4, monthly: 12, yearly: 0, minKeep: 3 },
    });
    expect(analytics).toMatchObject({
      timezone: 'America/New_York',
      postgres: { host: 'analytics.internal', port: 6543, database: 'analytics' },
      retention: { keepLast: 5, daily: 10, monthly: 24, minKeep: 5 },
    });
  });

  it('lets the environment win for the default database', async () => {
    const { load } = await withFile(GOOD, {
      BACKUP_PASSWORD: 'x',
      POSTGRES_DB: 'app',
      POSTGRES_HOST: '/var/run/postgresql',
      PGSHELF_SCHEDULE: '15 1 * * *',
    });
    const c = load();
    expect(c.databases.map((d) => d.name)).toEqual(['app', 'analytics']);
    expect(c.databases[0]).toMatchObject({
      schedule: '15 1 * * *',
      drillSchedule: '0 5 * * 0',
      postgres: { host: '/var/run/postgresql' },
    });
  });

  it.each([
    [
      'databases:\n  - name: app\n    shedule: "0 2 * * *"\n',
      /databases\.yaml:3: unknown key "shedule" in databases\[0\]/,
    ],
    [
      'databases:\n  - name: app\n    retention:\n      keep_lst: 3\n',
      /:4: unknown key "keep_lst" in databases\[0\]\.retention; did you mean "keep_last"\?/,
    ],
    [
      'databases:\n  - name: app\n    schedule: "0 26 * * *"\n',
      /:3: databases\[0\]\.schedule: .*not a valid cron expression.*e\.g\. schedule: "0 2 \* \* \*"/,
    ],
    [
      'databases:\n  - name: app\n    timezone: Europe/Pariss\n',
      /:3: .*not a known IANA time zone.*Europe\/Paris/,
    ],
    ['databases:\n  - name: app\n  - name: app\n', /:3: database "app" is listed twice/],
    ['databases: []\n', /"databases" must be a non-empty list/],
    [
      'databases:\n  - name: app\n    password_env: NOPE_NOT_SET\n',
      /:3: databases\[0\]\.password_env names NOPE_NOT_SET, which is not set/,
    ],
    [
      'databases:\n  - name: app\n    port: 99999\n',
      /:3: databases\[0\]\.port: "99999" is invalid: expected a whole number from 1 to 65535, e\.g\. port: 5432/,
    ],
    [
      'databases:\n  - name: app\n    retention: { daily: -1 }\n',
      /databases\[0\]\.retention\.daily: "-1" is invalid: expected a whole number from 0 to 100000, e\.g\. daily: 7/,
    ],
    [
      'defaults:\n  retention: { min_keep: 0 }\ndatabases:\n  - name: app\n',
      /:2: defaults\.retention\.min_keep: "0" is invalid: expected a whole number from 1 to 100000/,
    ],
    ['databases: [\n', /not valid YAML/],
    // An entry indented less than its siblings: the line is named, not "?".
    [
      'databases:\n  - name: app\n    schedule: "0 2 * * *"\n   host: x\n',
      /databases\.yaml:4: not valid YAML: .*check the indentation/,
    ],
  ])('rejects %j naming the file, the line and the key', async (yaml, message) => {
    const { load, file } = await withFile(yaml);
    expect(load).toThrow(message);
    expect(load).toThrow(file);
  });

  it.each([
    ['POSTGRES_PORT', 'port', '0', 'port: 0'],
    ['POSTGRES_HOST', 'host', '"db internal"', 'host: "db internal"'],
    ['PGSHELF_KEEP_WEEKLY', 'weekly', '1.5', 'retention: { weekly: 1.5 }'],
    ['PGSHELF_MIN_KEEP', 'min_keep', '0', 'retention: { min_keep: 0 }'],
    ['PGSHELF_TIMEZONE', 'timezone', 'Mars/Olympus', 'timezone: Mars/Olympus'],
    ['PGSHELF_SCHEDULE', 'schedule', '"0 2 * *"', 'schedule: "0 2 * *"'],
  ])('says the same of a bad %s as of a bad %s in the file', async (name, key, value, line) => {
    const raw = value.replace(/^"|"$/g, '');
    const fromEnv = (() => {
      try {
        loadConfig({ POSTGRES_DB: 'app', [name]: raw });
      } catch (err) {
        return (err as Error).message;
      }
      return 'accepted';
    })();
    // Same check, same words: only the naming differs (NAME="x" vs databases[0].key: "x").
    const { load } = await withFile(`databases:\n  - name: app\n    ${line}\n`);
    const label = line.startsWith('retention') ? `databases[0].retention.${key}` : `databases[0].${key}`;
    const expected = fromEnv
      .replace(`${name}=`, `${label}: `)
      .replace(new RegExp(`e\\.g\\. ${name}=(\\S+)`), (_, ex: string) => `e.g. ${key}: ${ex}`);
    expect(fromEnv).toMatch(/is (invalid|not a)/);
    // The host's example differs on purpose: a socket directory in the environment, a host name in the file.
    expect(load).toThrow(key === 'host' ? expected.replace(/e\.g\. .*$/s, '') : expected);
  });

  it('ends every unknown-key message with a real example', async () => {
    for (const yaml of [
      'databases:\n  - name: app\n    retention:\n      hourly: 3\n',
      'databses:\n  - name: app\n',
      'databases:\n  - name: app\nfoo: 1\n',
    ]) {
      const { load } = await withFile(yaml);
      expect(load).toThrow(/e\.g\. \S/);
      expect(load).not.toThrow(/e\.g\. $/);
    }
  });

  it("points a listed database's connection hints at its entry, not at POSTGRES_DB", async () => {
    const { load, file } = await withFile(GOOD, { BACKUP_PASSWORD: 's3cret' });
    const c = load();
    const analytics = resolveTarget(c, 'analytics').postgres;
    expect(analytics.origin).toBe(`${file}: databases[1] (name: analytics)`);
    expect(describeConnectError({ code: '3D000' }, analytics, 'analytics').message).toBe(
      `database "analytics" does not exist on analytics.internal:6543: check the entry ${file}: ` +
        'databases[1] (name: analytics) and its host and port',
    );
    // --db NAME for a database not in the file borrows a connection, not the entry's name.
    const other = resolveTarget(c, 'other').postgres;
    expect(other.origin).toBeUndefined();
    expect(describeConnectError({ code: '3D000' }, other, 'other').message).toMatch(/check POSTGRES_DB/);
  });

  it('names a missing file', () => {
    expect(() => loadConfig({ PGSHELF_CONFIG: '/nonexistent/pgshelf.yaml' })).toThrow(
      /PGSHELF_CONFIG=\/nonexistent\/pgshelf\.yaml: cannot read .*ENOENT/,
    );
  });
});
