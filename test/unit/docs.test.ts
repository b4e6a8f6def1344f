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
