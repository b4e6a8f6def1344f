import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { SETTINGS } from '../../src/config/index.js';

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
  it('the CLI carries its Node flags on its #! line, and the Docker image starts it through that line', async () => {
    const cli = await readFile(new URL('../../src/cli/index.ts', import.meta.url), 'utf8');
    const dockerfile = await readFile(new URL('../../Dockerfile', import.meta.url), 'utf8');
    const shebang = /^#!\/usr\/bin\/env -S node((?: --[\w-]+=\S+)+)\n/.exec(cli);
    expect(shebang?.[1]).toContain('--max-semi-space-size=');
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1] ?? '[]';
    expect((JSON.parse(entrypoint) as string[]).at(-1)).toBe('pgshelf');
    expect(dockerfile).toMatch(
      /^RUN ln -s \/app\/dist\/cli\/index\.js \/usr\/local\/bin\/pgshelf && chmod \+x /m,
    );
  });
});
