/**
 * Fault: the storage folder's file system fills up midway through a backup. A 16 MiB tmpfs stands for the full
 * disk; mounting needs root (CAP_SYS_ADMIN), and where that is not allowed the test skips and says why.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { StorageError } from '../../src/errors.js';
import { createBackupJob } from '../../src/jobs/backup.js';
import { createPruneJob } from '../../src/jobs/prune.js';
import { silentLogger } from '../../src/logger.js';
import { createStorage } from '../../src/storage/index.js';
import { pgEnv, testConfig } from '../helpers/env.js';
import { storedFiles } from '../helpers/faults.js';
import { useCleanup } from '../helpers/lifecycle.js';
import { createDatabase, dropDatabase, uniqueName, withClient } from '../helpers/pg.js';
import { ctx } from '../helpers/jobs.js';

const execFileAsync = promisify(execFile);
const defer = useCleanup();

/** A tmpfs of `size` mounted on a fresh directory, unmounted after the test; undefined (and why) if not allowed. */
async function smallDisk(size: string): Promise<{ dir: string } | { refused: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-fault-disk-'));
  try {
    await execFileAsync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    return { refused: (err as { stderr?: string }).stderr?.trim() || String(err) };
  }
  defer(async () => {
    await execFileAsync('umount', [dir]);
    await rm(dir, { recursive: true, force: true });
  });
  return { dir };
}

describe('fault: disk full on folder storage', () => {
  it('fails naming the storage and its free space, leaves no partial file nor manifest, and prune deletes nothing', async (test) => {
    const disk = await smallDisk('16m');
    if ('refused' in disk) {
      test.skip(`cannot mount a tmpfs here (${disk.refused}): run as root to test a full disk`);
      return;
    }
    const dir = disk.dir;
    const db = uniqueName();
    await createDatabase(db);
    defer(() => dropDatabase(db), { keepOnFailure: true });
    await withClient(db, (c) => c.query(`CREATE TABLE small AS SELECT i FROM generate_series(1, 100) i`));
    const config = testConfig({
      ...pgEnv(db),
      PGSHELF_STORAGE: `file://${dir}`,
      PGSHELF_KEEP_LAST: '1',
      PGSHELF_KEEP_DAILY: '0',
      PGSHELF_KEEP_WEEKLY: '0',
      PGSHELF_KEEP_MONTHLY: '0',
      PGSHELF_MIN_KEEP: '1',
    });
    const storage = createStorage(config.storage);
    const backup = createBackupJob({ config, storage, logger: silentLogger() });
    const prune = createPruneJob({ config, storage, logger: silentLogger() });
    // Two earlier backups, small enough for the disk: retention alone would delete the older one.
    await backup({}, ctx());
    await backup({}, ctx());
    expect((await prune({ dryRun: true }, ctx())).delete).toHaveLength(1);
    // md5 text compresses to about half: ~45 MB of dump is ~24 MB of gzip, more than the disk holds.
    await withClient(db, (c) =>
      c.query(
        `CREATE TABLE noise AS SELECT i, md5(random()::text) AS a, md5(random()::text) AS b
         FROM generate_series(1, 600000) i`,
      ),
    );
    const before = await storedFiles(dir);

    const backingUp = backup({}, ctx());
    await expect(backingUp).rejects.toThrow(StorageError);
    await expect(backingUp).rejects.toThrow(
      new RegExp(`cannot write the archive to file://${dir}: ENOSPC: no space left on device`),
    );
    // Free space of the storage, as the operator needs it to size the disk.
    await expect(backingUp).rejects.toThrow(
      /\(\d+\.\d MiB free of 16\.0 MiB\)\. Check PGSHELF_STORAGE and free space$/,
    );

    // No partial file, no archive, no manifest: only what was there, plus the attempt marker saying "failed".
    const marker = `${db}/.pgshelf-last-attempt.json`;
    expect(before).toContain(marker);
    expect(await storedFiles(dir)).toEqual(before);
    const attempt = JSON.parse(await readFile(path.join(dir, marker), 'utf8')) as {
      status: string;
      error: string;
    };
    expect(attempt.status).toBe('failed');
    expect(attempt.error).toMatch(/no space left on device/);

    // Prune after the failed attempt deletes nothing, and says why.
    const pruned = await prune({}, ctx());
    expect(pruned.blocked).toMatch(/latest backup attempt failed/);
    expect(pruned.delete).toEqual([]);
    expect(await storedFiles(dir)).toEqual(before);
  });
});
