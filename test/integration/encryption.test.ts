/**
 * age encryption end to end: encrypted backups restore, verify and drill; the `age` tool decrypts pgshelf's
 * archives and pgshelf restores the tool's files; missing and wrong keys fail before any database exists.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { ConfigError, DecryptionError } from '../../src/errors.js';
import { readManifest } from '../../src/catalog/manifest.js';
import { listBackups } from '../../src/catalog/backups.js';
import { AGE_MAGIC } from '../../src/archive/age.js';
import { runCli, startCli, waitFor } from '../helpers/cli.js';
import { pgEnv, s3Env, tempDir } from '../helpers/env.js';
import { ctx, jobs } from '../helpers/jobs.js';
import { daemon, useCleanup, workerFixture } from '../helpers/lifecycle.js';
import {
  createDatabase,
  createSampleSchema,
  dropDatabase,
  PG_USER,
  snapshotDatabase,
  uniqueName,
} from '../helpers/pg.js';
import { noRestoreLeftovers, shell } from '../helpers/restore.js';
import { createBucket } from '../helpers/s3.js';

const execFileAsync = promisify(execFile);
const defer = useCleanup();

/** A key pair made by age-keygen, as an operator makes one. */
async function ageKey(dir: string, name = 'age-identity.txt'): Promise<{ file: string; recipient: string }> {
  const file = path.join(dir, name);
  const { stderr } = await execFileAsync('age-keygen', ['-o', file]);
  const recipient = /Public key: (age1[0-9a-z]+)/.exec(stderr)?.[1];
  expect(recipient).toBeDefined();
  return { file, recipient: recipient! };
}

async function setup(rows = 300): Promise<{ source: string; dir: string; base: Env }> {
  const source = uniqueName();
  await createDatabase(source);
  defer(() => dropDatabase(source), { keepOnFailure: true });
  await createSampleSchema(source, rows);
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  return { source, dir, base: { ...pgEnv(source), PGSHELF_STORAGE: path.join(dir, 'backups') } };
}

function target(base = 'pgshelf_into'): string {
  const into = uniqueName(base);
  defer(() => dropDatabase(into), { keepOnFailure: true });
  return into;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The lines of the first ```sh block after `heading` in the README. */
async function readmeBlock(heading: string, after = ''): Promise<string[]> {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const from = readme.indexOf(heading);
  const start = after ? readme.indexOf(after, from) : from;
  expect(from).toBeGreaterThanOrEqual(0);
  expect(start).toBeGreaterThanOrEqual(0);
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(start))?.[1] ?? '';
  return block.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
}

describe('encrypted backups', () => {
  it('are age files whose manifest holds the recipients and the stored SHA-256; restore, verify and drill', async () => {
    const { source, dir, base } = await setup();
    const key = await ageKey(dir);
    const backup = await jobs({ ...base, PGSHELF_AGE_RECIPIENTS: key.recipient }).backup({}, ctx());
    expect(backup.archiveKey).toMatch(/\.sql\.gz\.age$/);
    expect(backup.encryption).toEqual({ format: 'age', recipients: [key.recipient] });
    const stored = await readFile(backup.archiveLocation);
    expect(stored.subarray(0, AGE_MAGIC.length).toString()).toBe(AGE_MAGIC);
    expect(stored.subarray(0, 2)).not.toEqual(Buffer.from([0x1f, 0x8b]));
    const both = jobs({ ...base, PGSHELF_AGE_IDENTITY_FILE: key.file });
    const manifest = await readManifest(both.storage, backup.manifestKey);
    expect(manifest.encryption).toEqual({ format: 'age', recipients: [key.recipient] });
    expect(manifest.archive).toEqual({
      key: backup.archiveKey,
      bytes: stored.length,
      sha256: sha256(stored),
    });
    const manifestText = await readFile(backup.manifestLocation, 'utf8');
    expect(manifestText).not.toContain('AGE-SECRET-KEY');
    expect(await listBackups(both.storage, { manifestKey: undefined }, source)).toMatchObject([
      { id: backup.id, status: 'complete', archive: backup.archiveLocation, bytes: stored.length },
    ]);

    const into = target();
    const restored = await both.restore({ into }, ctx());
    expect(restored).toMatchObject({ sha256: sha256(stored), checkedAgainstManifest: true });
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(source));

    const verified = await both.verify({}, ctx());
    expect(verified).toMatchObject({
      bytes: stored.length,
      sha256: sha256(stored),
      uncompressedBytes: manifest.uncompressedBytes,
    });
    const drill = await both.drill({}, ctx());
    expect(drill).toMatchObject({ verified: true, mismatches: [] });
    expect(drill.rows).toBe(Object.values(manifest.tables).reduce((a, b) => a + b, 0));
    expect((await readManifest(both.storage, backup.manifestKey)).drill?.verified).toBe(true);
  });

  it('restore by hand with the age tool, as the README writes it', async () => {
    const { source, dir, base } = await setup();
    const key = await ageKey(dir);
    const backup = await jobs({ ...base, PGSHELF_AGE_RECIPIENTS: key.recipient }).backup({}, ctx());
    // The README's file names, so its lines run as written; only the database and owner are this test's.
    await copyFile(backup.archiveLocation, path.join(dir, 'app_20261125T020000Z_1a2b3c4d.sql.gz.age'));
    const lines = await readmeBlock('## Encryption', 'restores by hand with the `age` tool');
    expect(lines).toEqual([
      'createdb --owner=app new_db',
      'age -d -i age-identity.txt app_20261125T020000Z_1a2b3c4d.sql.gz.age | gunzip | psql -X -v ON_ERROR_STOP=1 -d new_db',
    ]);
    const into = target();
    for (const line of lines) {
      await shell(line.replace('--owner=app', `--owner=${PG_USER}`).replace(/\bnew_db\b/, into), dir);
    }
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(source));
  });

  it('a file the age tool encrypted restores with pgshelf restore --key, by suffix or by header', async () => {
    const { source, dir, base } = await setup();
    const key = await ageKey(dir);
    const plain = await jobs(base).backup({}, ctx());
    expect(plain.encryption).toBeNull();
    const folder = path.dirname(plain.archiveLocation);
    await execFileAsync('age', [
      '-r',
      key.recipient,
      '-o',
      path.join(folder, 'tool.sql.gz.age'),
      plain.archiveLocation,
    ]);
    await copyFile(path.join(folder, 'tool.sql.gz.age'), path.join(folder, 'tool.bin'));
    const relative = path.relative(base.PGSHELF_STORAGE!, folder);
    const env = { ...base, PGSHELF_AGE_IDENTITY_FILE: key.file };
    for (const name of ['tool.sql.gz.age', 'tool.bin']) {
      const into = target();
      const res = await runCli(
        ['restore', '--in-process', '--key', `${relative}/${name}`, '--into', into],
        env,
      );
      expect(res.code, res.stderr).toBe(0);
      expect(res.stdout).toContain(`into "${into}"`);
      expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(source));
    }
  });
});

describe('keys that do not fit', () => {
  it('without PGSHELF_AGE_IDENTITY_FILE restore, verify and drill fail naming it, before any database exists', async () => {
    const { dir, base } = await setup(50);
    const key = await ageKey(dir);
    const env = { ...base, PGSHELF_AGE_RECIPIENTS: key.recipient };
    const j = jobs(env);
    const backup = await j.backup({}, ctx());
    const into = uniqueName('pgshelf_into');
    const missing = /is encrypted with age to age1.*PGSHELF_AGE_IDENTITY_FILE is not set/;
    await expect(j.restore({ into }, ctx())).rejects.toThrow(ConfigError);
    await expect(j.restore({ into, verifyFirst: true }, ctx())).rejects.toThrow(missing);
    await noRestoreLeftovers(into);
    await expect(j.verify({}, ctx())).rejects.toThrow(missing);
    await expect(j.drill({}, ctx())).rejects.toThrow(missing);
    // The drill learnt nothing about the backup: nothing recorded.
    expect((await readManifest(j.storage, backup.manifestKey)).drills).toEqual([]);

    const cli = await runCli(['restore', '--in-process', '--into', into], env);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toMatch(missing);
    expect(cli.stderr).toContain('this host holds public keys only');
    await noRestoreLeftovers(into);
  });

  it('with a key that is not a recipient they fail naming both sides; nothing is left', async () => {
    const { dir, base } = await setup(50);
    const key = await ageKey(dir);
    const other = await ageKey(dir, 'other.txt');
    await jobs({ ...base, PGSHELF_AGE_RECIPIENTS: key.recipient }).backup({}, ctx());
    const j = jobs({ ...base, PGSHELF_AGE_IDENTITY_FILE: other.file });
    const into = uniqueName('pgshelf_into');
    const wrong = new RegExp(
      `encrypted with age to ${key.recipient}, and none of the keys in PGSHELF_AGE_IDENTITY_FILE ` +
        `\\(${other.file}: ${other.recipient}\\) is among them`,
    );
    await expect(j.restore({ into }, ctx())).rejects.toThrow(DecryptionError);
    await expect(j.restore({ into }, ctx())).rejects.toThrow(wrong);
    await noRestoreLeftovers(into);
    await expect(j.verify({}, ctx())).rejects.toThrow(wrong);
    await expect(j.drill({}, ctx())).rejects.toThrow(DecryptionError);
  });

  it('a changed byte in an encrypted archive fails the restore and verify; nothing is committed or left', async () => {
    const { dir, base } = await setup(2000);
    const key = await ageKey(dir);
    const backup = await jobs({ ...base, PGSHELF_AGE_RECIPIENTS: key.recipient }).backup({}, ctx());
    const stored = await readFile(backup.archiveLocation);
    const changed = Buffer.from(stored);
    changed[Math.floor(stored.length / 2)]! ^= 0x01;
    await writeFile(backup.archiveLocation, changed);
    const j = jobs({ ...base, PGSHELF_AGE_IDENTITY_FILE: key.file });
    const into = uniqueName('pgshelf_into');
    // Which check speaks first is a race between two stages of one pipeline: age's authentication of the chunk
    // holding the byte, or the SHA-256 of the whole stored file at its end. Either refusal is right; what
    // matters is that one comes, names the damage, and nothing is committed.
    const damaged =
      /cannot be decrypted \(age: .*\): it is truncated or damaged|does not match its manifest: SHA-256/;
    await expect(j.restore({ into }, ctx())).rejects.toThrow(damaged);
    await noRestoreLeftovers(into);
    await expect(j.verify({}, ctx())).rejects.toThrow(damaged);
  });

  it('a worker holding only the public key backs up, and refuses restores naming the setting', async () => {
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const key = await ageKey(dir);
    const { db, env } = await workerFixture(defer, { env: { PGSHELF_AGE_RECIPIENTS: key.recipient } });
    const w = daemon('worker', env, defer);
    await waitFor('worker to start', () => w.stderr().includes('worker started'));
    const backup = await runCli(['backup', '--json'], env);
    expect(backup.code, backup.stderr).toBe(0);
    const result = JSON.parse(backup.stdout) as { archiveLocation: string; encryption: unknown };
    expect(result.archiveLocation).toMatch(/\.sql\.gz\.age$/);
    expect(result.encryption).toEqual({ format: 'age', recipients: [key.recipient] });

    // The command holds the key, but the job runs on the worker, which does not.
    const into = uniqueName('pgshelf_into');
    const restore = await runCli(['restore', '--into', into], {
      ...env,
      PGSHELF_AGE_IDENTITY_FILE: key.file,
    });
    expect(restore.code).toBe(1);
    expect(restore.stderr).toMatch(/PGSHELF_AGE_IDENTITY_FILE is not set \(this host holds public keys only/);
    await noRestoreLeftovers(into);
    // The archive itself is sound: the key holder restores it in-process.
    const local = uniqueName('pgshelf_into');
    defer(() => dropDatabase(local), { keepOnFailure: true });
    const res = await runCli(['restore', '--in-process', '--into', local], {
      ...env,
      PGSHELF_AGE_IDENTITY_FILE: key.file,
    });
    expect(res.code, res.stderr).toBe(0);
    expect(await snapshotDatabase(local)).toEqual(await snapshotDatabase(db));
  });
});

describe('workers split by key', () => {
  it('--only backup,prune on the public-key hosts leaves restores to the worker that holds the secret key', async () => {
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const key = await ageKey(dir);
    const { db, env } = await workerFixture(defer, { env: { PGSHELF_AGE_RECIPIENTS: key.recipient } });
    const start = (args: string[], workerEnv: Env) => {
      const w = startCli(args, workerEnv);
      defer(async () => {
        if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
        await w.done;
      });
      return w;
    };
    const bad = await runCli(['worker', '--only', 'backup,restores'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--only "backup,restores": "restores" is not a kind of job/);
    const backups = start(['worker', '--only', 'backup,prune'], env);
    const restores = start(['worker', '--only', 'restore,drill'], {
      ...env,
      PGSHELF_AGE_IDENTITY_FILE: key.file,
    });
    await waitFor('workers to start', () =>
      [backups, restores].every((w) => w.stderr().includes('worker started')),
    );
    expect((await runCli(['backup'], env)).code).toBe(0);
    const into = target();
    const res = await runCli(['restore', '--into', into], env);
    expect(res.code, res.stderr).toBe(0);
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(db));
    // Each worker ran only its own kinds.
    expect(backups.stderr()).toContain('"msg":"backup finished"');
    expect(backups.stderr()).not.toContain('"msg":"restore started"');
    expect(restores.stderr()).toContain('"msg":"restore finished"');
    expect(restores.stderr()).not.toContain('"msg":"backup started"');
  });
});

describe('encrypted backups on S3', () => {
  it('upload an age file, and restore and verify from it', async () => {
    const { source, dir, base } = await setup();
    const key = await ageKey(dir);
    const bucket = await createBucket();
    const env = {
      ...base,
      ...s3Env(bucket, 'enc'),
      PGSHELF_AGE_RECIPIENTS: key.recipient,
      PGSHELF_AGE_IDENTITY_FILE: key.file,
    };
    const j = jobs(env);
    const backup = await j.backup({}, ctx());
    expect(backup.archiveLocation).toBe(`s3://${bucket}/enc/${backup.archiveKey}`);
    expect(backup.archiveKey).toMatch(/\.sql\.gz\.age$/);
    const into = target();
    await j.restore({ into }, ctx());
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(source));
    expect(await j.verify({}, ctx())).toMatchObject({ sha256: backup.sha256, bytes: backup.bytes });
    await j.storage.close();
  });
});

describe("the README's by-hand restore", () => {
  it('runs as written: a plain archive is gzip of plain SQL, an encrypted one goes through age first', async () => {
    const { source, dir, base } = await setup(100);
    const key = await ageKey(dir, 'key.txt');
    const plain = await jobs(base).backup({}, ctx());
    const sql = gunzipSync(await readFile(plain.archiveLocation)).toString('utf8');
    expect(sql).toMatch(/^--\n-- PostgreSQL database dump\n/);
    const encrypted = await jobs({ ...base, PGSHELF_AGE_RECIPIENTS: key.recipient }).backup({}, ctx());
    await copyFile(plain.archiveLocation, path.join(dir, 'app_20261125T020000Z_1a2b3c4d.sql.gz'));
    await copyFile(encrypted.archiveLocation, path.join(dir, 'app_20261125T020000Z_1a2b3c4d.sql.gz.age'));
    const [globals, createdb, gunzip, age, ...rest] = await readmeBlock('# pgshelf', 'restorable by hand');
    expect(rest).toEqual([]);
    // The whole-server line (roles from the globals archive) runs in test/integration/globals.test.ts.
    expect(globals).toMatch(/^gunzip -c globals_\S+\.sql\.gz \| psql -X -d postgres$/);
    expect(createdb).toBe('createdb --owner=app new_db');
    expect(gunzip).toMatch(/^gunzip -c app_\S+\.sql\.gz \| psql/);
    expect(age).toMatch(/^age -d -i key\.txt app_\S+\.sql\.gz\.age \| gunzip \| psql/);
    for (const restoreLine of [gunzip!, age!]) {
      const into = target();
      for (const line of [createdb!, restoreLine]) {
        await shell(line.replace('--owner=app', `--owner=${PG_USER}`).replace(/\bnew_db\b/, into), dir);
      }
      expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(source));
    }
  });
});
