/**
 * The README's install step for use outside this repository: the packed tarball installs into an empty folder and
 * its `pgshelf` bin runs. Dependencies come from npm's cache (--prefer-offline); with neither the registry nor the
 * cache reachable the test is skipped, saying why.
 */
import { execFile } from 'node:child_process';
import { readdir, rm, writeFile } from 'node:fs/promises';
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
    await writeFile(
      path.join(dir, 'package.json'),
      '{"name":"try-pgshelf","version":"1.0.0","private":true}\n',
    );
    try {
      await run(
        'npm',
        ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', `./${tarball!}`],
        { cwd: dir, env, timeout: 180_000 },
      );
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
  });
});
