/**
 * The README's install step for use outside this repository: the packed tarball installs into an empty folder and
 * its `pgshelf` bin runs, with only the runtime dependencies (none of the devDependencies) beside it.
 *
 * The folder gets a lockfile made from this repository's: the tarball and every non-dev package at the version
 * this repository locks, so `npm ci --offline` installs them from npm's cache (which `npm ci` of this repository
 * has just filled) without asking the registry. A plain `npm install ./pgshelf.tgz` resolves every version anew:
 * on a fresh machine that took more than 2 minutes of registry requests (CI timed out on it); this takes ~7 s.
 * Without the cache, it falls back to the registry (--prefer-offline); with neither, the test is skipped saying why.
 */
import { execFile } from 'node:child_process';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { baseEnv, tempDir } from '../helpers/env.js';
import { useCleanup } from '../helpers/lifecycle.js';

const run = promisify(execFile);
const defer = useCleanup();
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('npm pack + npm install', () => {
  it('installs the tarball into an empty folder, and node_modules/.bin/pgshelf --help prints the help', async (ctx) => {
    const dir = await tempDir('pgshelf-pack-');
    defer(() => rm(dir, { recursive: true, force: true }));
    const env = { ...baseEnv(), npm_config_update_notifier: 'false' } as NodeJS.ProcessEnv;
    // dist/ is already built (npm test builds first), so the pack needs no scripts.
    await run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: ROOT, env });
    const [tarball] = (await readdir(dir)).filter((f) => f.endsWith('.tgz'));
    expect(tarball).toMatch(/^pgshelf-\d+\.\d+\.\d+\.tgz$/);
    const lock = JSON.parse(await readFile(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; devOptional?: boolean; [k: string]: unknown }>;
    };
    const self = lock.packages['']!;
    const dependencies = { pgshelf: `file:${tarball!}` };
    const packages: Record<string, unknown> = {
      '': { name: 'try-pgshelf', version: '1.0.0', dependencies },
      'node_modules/pgshelf': {
        version: self.version,
        resolved: `file:${tarball!}`,
        dependencies: self.dependencies,
        bin: self.bin,
        engines: self.engines,
      },
    };
    for (const [key, entry] of Object.entries(lock.packages)) {
      if (key === '' || entry.dev) continue;
      const { devOptional: _, ...rest } = entry;
      packages[key] = rest;
    }
    const project = { name: 'try-pgshelf', version: '1.0.0', private: true, dependencies };
    await writeFile(path.join(dir, 'package.json'), `${JSON.stringify(project)}\n`);
    await writeFile(
      path.join(dir, 'package-lock.json'),
      `${JSON.stringify({ ...project, lockfileVersion: 3, requires: true, packages }, null, 2)}\n`,
    );
    const install = (mode: string) =>
      run('npm', ['ci', mode, '--no-audit', '--no-fund', '--ignore-scripts'], {
        cwd: dir,
        env,
        timeout: 100_000,
      });
    try {
      await install('--offline').catch((err: { stderr?: string }) => {
        // A package missing from the cache: ask the registry for it.
        if (/ENOTCACHED/.test(err.stderr ?? '')) return install('--prefer-offline');
        throw err;
      });
    } catch (err) {
      const why = (err as { stderr?: string }).stderr ?? String(err);
      if (/ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ENOTCACHED|network/i.test(why)) {
        ctx.skip(`npm could reach neither the registry nor its cache: ${why.split('\n')[0]}`);
      }
      throw err;
    }
    const help = await run(path.join(dir, 'node_modules', '.bin', 'pgshelf'), ['--help'], { cwd: dir, env });
    expect(help.stdout).toMatch(/^Usage: pgshelf \[options\] \[command\]/);
    expect(help.stdout).toMatch(/^ {2}backup \[options\] +dump a database/m);
    expect(help.stdout).toContain('PGSHELF_STORAGE');
  }, 240_000);
});
