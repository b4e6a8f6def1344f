import { randomBytes } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  lstatSync,
  mkdirSync,
  openSync,
  realpathSync,
  unlinkSync,
  type Dirent,
} from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { OutsideStorageError, StorageError } from '../errors.js';
import {
  newRequestCounts,
  type IncompleteUpload,
  type ObjectInfo,
  type ObjectWriter,
  type OpenReadOptions,
  type Storage,
  type WriteOptions,
} from './storage.js';

const PARTIAL = '.partial';

/** Local-folder storage: write to a hidden temp name, fsync, rename; readers never see a half-written file. */
export class FsStorage implements Storage {
  readonly url: string;
  readonly requests = newRequestCounts();
  /** Temp files of writers neither committed nor aborted, for abortWritersNow(). */
  private readonly openWriters = new Map<string, { destroy(): void }>();

  constructor(readonly root: string) {
    this.url = `file://${root}`;
  }

  /** The root's real path, once the root exists. */
  private realRoot: string | undefined;

  private textual(key: string): string {
    const file = path.resolve(this.root, ...key.split('/'));
    if (file !== this.root && !file.startsWith(this.root + path.sep)) {
      throw new OutsideStorageError(
        `key ${JSON.stringify(key)} points outside the storage folder ${this.root}`,
      );
    }
    return file;
  }

  /**
   * The file for `key`, refused when the existing part of its path resolves outside the root: a symbolic link in
   * the folder must not let a restore read, or a backup write, anywhere else.
   */
  private file(key: string): string {
    const file = this.textual(key);
    const root = this.rootReal();
    if (root === undefined) return file; // no root yet: nothing under it can be a link
    for (let existing = file; ; existing = path.dirname(existing)) {
      let real: string;
      try {
        real = realpathSync.native(existing);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
        // A dangling link resolves nowhere; whatever it would create or name is outside the folder's control.
        if (lstatSync(existing, { throwIfNoEntry: false })?.isSymbolicLink()) real = '';
        else if (existing === this.root) return file;
        else continue;
      }
      if (real === root || real.startsWith(root + path.sep)) return file;
      throw new OutsideStorageError(
        `key ${JSON.stringify(key)} resolves outside the storage folder ${this.root}` +
          `${real ? ` (to ${real})` : ' (through a dangling symbolic link)'}: remove the symbolic link on ` +
          'that path, or point PGSHELF_STORAGE at the real folder',
      );
    }
  }

  private rootReal(): string | undefined {
    if (this.realRoot === undefined) {
      try {
        this.realRoot = realpathSync.native(this.root);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    return this.realRoot;
  }

  locate(key: string): string {
    return this.textual(key);
  }

  createWriter(key: string, _options: WriteOptions = {}): ObjectWriter {
    const final = this.file(key);
    const temp = path.join(
      path.dirname(final),
      `.${path.basename(final)}.${randomBytes(4).toString('hex')}${PARTIAL}`,
    );
    this.requests.put++;
    // Sync mkdir and open: once per backup, and the temp file then exists as soon as the writer does, so
    // abortWritersNow() can always remove it.
    mkdirSync(path.dirname(final), { recursive: true });
    const fd = openSync(temp, 'wx', 0o600);
    const stream = createWriteStream(temp, { fd, highWaterMark: 1 << 20 });
    this.openWriters.set(temp, stream);
    let settled = false;
    return {
      stream,
      commit: async () => {
        if (settled) throw new StorageError(`writer for ${key} already finished`);
        settled = true;
        this.openWriters.delete(temp);
        const handle = await open(temp, 'r');
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(temp, final);
        await syncDir(path.dirname(final));
      },
      abort: async () => {
        if (settled) return;
        settled = true;
        this.openWriters.delete(temp);
        stream.destroy();
        await rm(temp, { force: true });
      },
    };
  }

  abortWritersNow(): void {
    for (const [temp, stream] of this.openWriters) {
      stream.destroy();
      try {
        unlinkSync(temp);
      } catch {
        // Already gone.
      }
    }
    this.openWriters.clear();
  }

  async putObject(key: string, body: string | Buffer): Promise<void> {
    const final = this.file(key);
    await mkdir(path.dirname(final), { recursive: true });
    const temp = path.join(
      path.dirname(final),
      `.${path.basename(final)}.${randomBytes(4).toString('hex')}${PARTIAL}`,
    );
    this.requests.put++;
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(body);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, final);
    await syncDir(path.dirname(final));
  }

  async getObject(key: string, options: { maxBytes?: number } = {}): Promise<Buffer | undefined> {
    this.requests.get++;
    try {
      if (options.maxBytes === undefined) return await readFile(this.file(key));
      const handle = await open(this.file(key), 'r');
      try {
        // Sized by the file, not the cap: a few-KB manifest must not cost a cap-sized buffer.
        const { size } = await handle.stat();
        const buf = Buffer.allocUnsafe(Math.min(size, options.maxBytes) + 1);
        let filled = 0;
        for (;;) {
          const { bytesRead } = await handle.read(buf, filled, buf.length - filled, filled);
          if (bytesRead === 0) break;
          filled += bytesRead;
          if (filled === buf.length) break;
        }
        return buf.subarray(0, filled);
      } finally {
        await handle.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async openRead(key: string, options: OpenReadOptions = {}): Promise<Readable> {
    const file = this.file(key);
    this.requests.get++;
    // Open eagerly so that a missing file is an error here, not later mid-pipeline.
    const handle = await open(file, 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new StorageError(`${file} does not exist`, { cause: err });
      throw err;
    });
    return createReadStream('', { fd: handle, highWaterMark: 1 << 20, signal: options.signal });
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    this.requests.head++;
    try {
      const s = await stat(this.file(key));
      return s.isFile() ? { key, size: s.size, lastModified: s.mtime } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    this.requests.list++;
    for (const { key, partial } of await this.walk(prefix)) {
      if (partial) continue;
      const info = await stat(this.file(key)).catch(() => undefined);
      if (info?.isFile()) yield { key, size: info.size, lastModified: info.mtime };
    }
  }

  /**
   * All files under the folder that holds `prefix`, whose key starts with `prefix`, sorted by key. Directories
   * reached through a symbolic link are not entered, and a linked file is listed only when it resolves inside.
   */
  private async walk(prefix: string): Promise<{ key: string; partial: boolean }[]> {
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash === -1 ? '' : prefix.slice(0, slash);
    const out: { key: string; partial: boolean }[] = [];
    const visit = async (dir: string, base: string): Promise<void> => {
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        throw err;
      }
      for (const entry of entries) {
        const key = base === '' ? entry.name : `${base}/${entry.name}`;
        if (entry.isDirectory()) {
          if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`))
            await visit(path.join(dir, entry.name), key);
          continue;
        }
        if (!key.startsWith(prefix)) continue;
        if (entry.isSymbolicLink() && !this.inside(key)) continue;
        out.push({ key, partial: entry.name.startsWith('.') && entry.name.endsWith(PARTIAL) });
      }
    };
    await visit(dirKey === '' ? this.root : this.file(dirKey), dirKey);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  private inside(key: string): boolean {
    try {
      this.file(key);
      return true;
    } catch (err) {
      if (err instanceof OutsideStorageError) return false;
      throw err;
    }
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      this.requests.delete++;
      await rm(this.file(key), { force: true });
    }
  }

  async *listIncomplete(prefix: string): AsyncIterable<IncompleteUpload> {
    for (const { key, partial } of await this.walk(prefix)) {
      if (!partial) continue;
      const info = await stat(this.file(key)).catch(() => undefined);
      if (!info) continue;
      const name = path.basename(key);
      const target = name.slice(1, name.length - PARTIAL.length).replace(/\.[0-9a-f]{8}$/, '');
      yield { key: key.slice(0, key.length - name.length) + target, uploadId: key, initiated: info.mtime };
    }
  }

  async abortIncomplete(upload: IncompleteUpload): Promise<void> {
    this.requests.delete++;
    await rm(this.file(upload.uploadId), { force: true });
  }

  async open(): Promise<void> {}

  async close(): Promise<void> {}
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch {
    // Some file systems cannot fsync a directory; the rename is still atomic there.
  } finally {
    await handle.close();
  }
}
