import { readFile, rm, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import {
  BackupNotFoundError,
  ChecksumMismatchError,
  CorruptArchiveError,
  ManifestInvalidError,
  ManifestSignatureError,
} from '../../src/errors.js';
import { type BackupResult } from '../../src/jobs/backup.js';
import { createRestoreJob } from '../../src/jobs/restore.js';
import { silentLogger } from '../../src/logger.js';
import { parseManifest, readManifest } from '../../src/catalog/manifest.js';
import { createStorage } from '../../src/storage/index.js';
import { nextSecond, runCli } from '../helpers/cli.js';
import { pgEnv, s3Env, tempDir, testConfig } from '../helpers/env.js';
import { sampleDatabase, useCleanup } from '../helpers/lifecycle.js';
import { databaseExists, dropDatabase, snapshotDatabase, uniqueName } from '../helpers/pg.js';
import { createBucket } from '../helpers/s3.js';
import { ctx, jobs } from '../helpers/jobs.js';

const defer = useCleanup();
const KEY = 'a'.repeat(64);

const source = (rows = 30): Promise<string> => sampleDatabase(defer, rows);

async function folderEnv(db: string, env: Env = {}): Promise<Env> {
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  return { ...pgEnv(db), PGSHELF_STORAGE: dir, ...env };
}

function into(): string {
  const name = uniqueName('pgshelf_into');
  defer(() => dropDatabase(name), { keepOnFailure: true });
  return name;
}

/** Rewrites a manifest file's JSON as an attacker with write access would (no key: the signature stays). */
async function tamper(b: BackupResult, change: (m: Record<string, unknown>) => void): Promise<string> {
  const m = JSON.parse(await readFile(b.manifestLocation, 'utf8')) as Record<string, unknown>;
  change(m);
  const text = JSON.stringify(m, null, 2);
  await writeFile(b.manifestLocation, text);
  return text;
}

describe('signed manifests (PGSHELF_MANIFEST_KEY)', () => {
  it('a signed backup round-trips through restore, drill and verify; the drill re-signs its rewrite', async () => {
    const db = await source();
    const env = await folderEnv(db, { PGSHELF_MANIFEST_KEY: KEY });
    const j = jobs(env);
    const backup = await j.backup({}, ctx());
    const raw = JSON.parse(await readFile(backup.manifestLocation, 'utf8')) as { signature: string };
    expect(raw.signature).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    expect(await readFile(backup.manifestLocation, 'utf8')).not.toContain(KEY);

    const target = into();
    await j.restore({ into: target }, ctx());
    expect(await snapshotDatabase(target)).toEqual(await snapshotDatabase(db));
    expect((await j.verify({}, ctx())).sha256).toBe(backup.sha256);
    expect((await j.drill({}, ctx())).verified).toBe(true);
    const after = await readManifest(j.storage, backup.manifestKey, { signingKey: KEY });
    expect(after.drills).toHaveLength(1);
    expect(after.signature).not.toBe(raw.signature);
    expect((await j.verify({}, ctx())).backupId).toBe(backup.id);
  });

  it('refuses a tampered sha256 or archive.key before restoring anything, and drill leaves it as it was', async () => {
    const db = await source();
    const env = await folderEnv(db, { PGSHELF_MANIFEST_KEY: KEY });
    const j = jobs(env);
    const older = await j.backup({}, ctx());
    await nextSecond();
    const backup = await j.backup({}, ctx());
    const original = await readFile(backup.manifestLocation, 'utf8');

    const tampered = await tamper(backup, (m) => ((m.archive as { sha256: string }).sha256 = '0'.repeat(64)));
    const target = into();
    await expect(j.restore({ into: target }, ctx())).rejects.toThrow(ManifestSignatureError);
    // Refused, not skipped: the message names the backup to choose instead.
    await expect(j.restore({ into: target }, ctx())).rejects.toThrow(
      new RegExp(
        `signature that does not match its content.*PGSHELF_MANIFEST_KEY.*use --backup ${older.id}`,
        's',
      ),
    );
    expect(await databaseExists(target)).toBe(false);
    await expect(j.verify({}, ctx())).rejects.toThrow(ManifestSignatureError);
    await expect(j.drill({}, ctx())).rejects.toThrow(ManifestSignatureError);
    expect(await readFile(backup.manifestLocation, 'utf8')).toBe(tampered);

    await writeFile(backup.manifestLocation, original);
    await tamper(backup, (m) => ((m.archive as { key: string }).key += '.age'));
    await expect(j.restore({ into: target }, ctx())).rejects.toThrow(ManifestSignatureError);
    expect(await databaseExists(target)).toBe(false);
  });

  it('refuses an unsigned manifest once the key is set, and list marks it invalid', async () => {
    const db = await source();
    const env = await folderEnv(db);
    const backup = await jobs(env).backup({}, ctx());
    const keyed = jobs({ ...env, PGSHELF_MANIFEST_KEY: KEY });
    const target = into();
    await expect(keyed.restore({ into: target }, ctx())).rejects.toThrow(/is not signed/);
    await expect(keyed.verify({}, ctx())).rejects.toThrow(ManifestSignatureError);
    await expect(keyed.drill({}, ctx())).rejects.toThrow(ManifestSignatureError);
    expect(await databaseExists(target)).toBe(false);
    const res = await runCli(['list', '--json'], { ...env, PGSHELF_MANIFEST_KEY: KEY });
    expect(res.code, res.stderr).toBe(0);
    const listed = (JSON.parse(res.stdout) as { backups: { id: string; status: string; problem: string }[] })
      .backups;
    expect(listed).toMatchObject([{ id: backup.id, status: 'invalid' }]);
    expect(listed[0]!.problem).toMatch(/is not signed/);
  });
});

describe('manifests are checked before use', () => {
  it("refuses a manifest of database A that points at database B's archive, before reading a byte", async () => {
    const [a, b] = [await source(10), await source(40)];
    const env = await folderEnv(a);
    const backupA = await jobs(env).backup({}, ctx());
    const backupB = await jobs({ ...env, ...pgEnv(b) }).backup({}, ctx());
    await tamper(backupA, (m) => {
      m.archive = { key: backupB.archiveKey, bytes: backupB.bytes, sha256: backupB.sha256 };
    });
    const config = testConfig(env);
    const storage = createStorage(config.storage);
    const restore = createRestoreJob({ config, storage, logger: silentLogger() });
    const target = into();
    const before = storage.requests.get;
    const attempt = restore({ into: target }, ctx());
    await expect(attempt).rejects.toThrow(ManifestInvalidError);
    await expect(attempt).rejects.toThrow(`names the archive "${backupB.archiveKey}", which is not its own`);
    expect(storage.requests.get - before).toBe(1); // the manifest, and no archive byte
    expect(await databaseExists(target)).toBe(false);
  });

  it('a drill of a manifest whose drills is not a list fails naming the field, and changes nothing', async () => {
    const db = await source();
    const env = await folderEnv(db);
    const backup = await jobs(env).backup({}, ctx());
    const text = await tamper(backup, (m) => (m.drills = 'none'));
    const attempt = jobs(env).drill({}, ctx());
    await expect(attempt).rejects.toThrow(ManifestInvalidError);
    await expect(attempt).rejects.toThrow(/manifest .*\.manifest\.json is invalid: drills: .*expected array/);
    expect(await readFile(backup.manifestLocation, 'utf8')).toBe(text);
  });

  it('reads at most the cap of an oversized manifest on S3', async () => {
    const db = await source(5);
    const bucket = await createBucket();
    const env = { ...pgEnv(db), ...s3Env(bucket, 'cap') };
    const j = jobs(env);
    defer(() => j.storage.close());
    const backup = await j.backup({}, ctx());
    const huge = Buffer.alloc(20 * 1024 * 1024, 0x20);
    await j.storage.putObject(backup.manifestKey, huge);
    const body = await j.storage.getObject(backup.manifestKey, { maxBytes: 1000 });
    expect(body!.length).toBe(1001);
    await expect(j.verify({}, ctx())).rejects.toThrow(/larger than 4194304 bytes/);
    expect(() => parseManifest(huge, backup.manifestKey)).toThrow(ManifestInvalidError);
  });
});

describe('missing and damaged archives', () => {
  it('list marks a backup whose archive is missing; restore latest names it and the backup to use', async () => {
    const db = await source(10);
    const env = await folderEnv(db);
    const j = jobs(env);
    const older = await j.backup({}, ctx());
    await nextSecond();
    const newer = await j.backup({}, ctx());
    await rm(newer.archiveLocation);

    const res = await runCli(['list', '--json'], env);
    expect(res.code, res.stderr).toBe(0);
    const listed = (JSON.parse(res.stdout) as { backups: { id: string; status: string }[] }).backups;
    expect(listed.map((b) => [b.id, b.status])).toEqual([
      [newer.id, 'missing'],
      [older.id, 'complete'],
    ]);
    const human = await runCli(['list'], env);
    expect(human.stdout).toMatch(new RegExp(`${newer.id} .*MISSING \\(no archive\\)`));
    expect(human.stdout).toContain(`${newer.id}: archive ${newer.archiveLocation} is missing`);

    const target = into();
    const attempt = j.restore({ into: target }, ctx());
    await expect(attempt).rejects.toThrow(BackupNotFoundError);
    await expect(attempt).rejects.toThrow(`${newer.archiveLocation} is missing`);
    await expect(attempt).rejects.toThrow(`use --backup ${older.id}`);
    expect(await databaseExists(target)).toBe(false);
    await j.restore({ into: target, backup: older.id }, ctx());
    expect(await snapshotDatabase(target)).toEqual(await snapshotDatabase(db));
  });

  it('verify names the backup and the file, and calls a short archive truncated', async () => {
    const db = await source(10);
    const env = await folderEnv(db);
    const j = jobs(env);
    const backup = await j.backup({}, ctx());
    const bytes = await readFile(backup.archiveLocation);
    const flipped = Buffer.from(bytes);
    flipped[6]! ^= 0x01;
    await writeFile(backup.archiveLocation, flipped);
    const damaged = j.verify({}, ctx());
    await expect(damaged).rejects.toThrow(ChecksumMismatchError);
    await expect(damaged).rejects.toThrow(`backup ${backup.id} of "${db}": ${backup.archiveLocation}`);

    await writeFile(backup.archiveLocation, bytes.subarray(0, bytes.length - 100));
    const short = j.verify({}, ctx());
    await expect(short).rejects.toThrow(CorruptArchiveError);
    // The whole message, to the letter.
    await expect(short).rejects.toHaveProperty(
      'message',
      `backup ${backup.id} of "${db}": ${backup.archiveLocation} is truncated: read ${bytes.length - 100} of ` +
        `${bytes.length} bytes. Restore another backup (\`pgshelf list\`)`,
    );
  });
});
