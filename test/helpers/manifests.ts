/** Backups as prune and list see them, without running pg_dump: an archive and a schema-valid manifest. */
import { createHash } from 'node:crypto';
import {
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  writeManifest,
  type Manifest,
} from '../../src/catalog/manifest.js';
import type { Storage } from '../../src/storage/index.js';
import { backupKeys } from '../../src/catalog/layout.js';

export const FAKE_ARCHIVE = 'gzip bytes';

export function fakeManifest(database: string, at: Date, id: string, archiveBody = FAKE_ARCHIVE): Manifest {
  return {
    format: MANIFEST_FORMAT,
    formatVersion: MANIFEST_VERSION,
    id,
    database,
    host: 'localhost',
    port: 5432,
    serverVersion: '15.10',
    serverVersionNum: 150010,
    pgDumpVersion: '15.10',
    pgDumpPath: '/usr/lib/postgresql/15/bin/pg_dump',
    dumpOptions: { noOwner: false, noPrivileges: false },
    compression: { format: 'gzip', level: 6 },
    encryption: null,
    archive: {
      key: backupKeys(database, at, id).archive,
      bytes: Buffer.byteLength(archiveBody),
      sha256: createHash('sha256').update(archiveBody).digest('hex'),
    },
    uncompressedBytes: 100,
    databaseSize: 8000,
    startedAt: at.toISOString(),
    finishedAt: new Date(at.getTime() + 1000).toISOString(),
    durationMs: 1000,
    tables: {},
    drill: null,
    drills: [],
  };
}

/** Stores an archive and (unless `manifest` is false) its manifest, signed with `signingKey` when given. */
export async function storeFake(
  storage: Storage,
  database: string,
  at: Date,
  id: string,
  options: { manifest?: boolean; signingKey?: string } = {},
): Promise<void> {
  const keys = backupKeys(database, at, id);
  await storage.putObject(keys.archive, FAKE_ARCHIVE, 'application/gzip');
  if (options.manifest !== false) {
    await writeManifest(storage, keys.manifest, fakeManifest(database, at, id), {
      signingKey: options.signingKey,
    });
  }
}
