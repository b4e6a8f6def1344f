import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { SETTINGS } from '../../src/config.js';

describe('README', () => {
  it('starts with the two set-up commands', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    expect(firstBlock).toMatch(/^npm ci && npm run demo/m);
    expect(firstBlock).toMatch(/^npm test/m);
  });

  it('documents every setting pgshelf reads', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const table = readme.slice(readme.indexOf('## Settings'));
    const missing = SETTINGS.map((s) => s.name).filter((name) => {
      const short = name.replace(/^PGSHELF_KEEP_/, '_');
      return (
        !table.includes(`\`${name}\``) &&
        !(name.startsWith('PGSHELF_KEEP_') && table.includes(`\`${short}\``))
      );
    });
    expect(missing).toEqual([]);
  });
});

describe('Node flags', () => {
  it('the Docker image starts the CLI with the same Node flags as its #! line', async () => {
    const cli = await readFile(new URL('../../src/cli/index.ts', import.meta.url), 'utf8');
    const dockerfile = await readFile(new URL('../../Dockerfile', import.meta.url), 'utf8');
    const shebang = /^#!\/usr\/bin\/env -S node((?: --[\w-]+=\S+)+)\n/.exec(cli);
    expect(shebang?.[1]).toContain('--max-semi-space-size=');
    const flags = (shebang?.[1] ?? '').trim().split(' ');
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1] ?? '[]';
    const argv = JSON.parse(entrypoint) as string[];
    expect(argv.slice(argv.indexOf('node') + 1, -1)).toEqual(flags);
  });
});
