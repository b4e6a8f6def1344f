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

  it("has exactly the settings table's rows: no setting missing, none extra, same defaults and meanings", async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('\n## Settings\n'));
    const start = section.indexOf('\n| variable');
    const table = section.slice(start, section.indexOf('\n\n', start));
    const rows = table
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .map((line) => {
        const [name, def, meaning] = line
          .slice(1, -1)
          .split(' | ')
          .map((cell) => cell.trim());
        return { name: name!.replace(/`/g, ''), default: def, meaning };
      });
    expect(rows.length).toBeGreaterThan(40);
    const expected = SETTINGS.map((s) => ({ name: s.name, default: s.default, meaning: s.meaning }));
    // Names first, so a missing or extra row reads as one in the failure, then the whole rows.
    expect(rows.map((r) => r.name)).toEqual(expected.map((s) => s.name));
    expect(rows).toEqual(expected);
  });
});

describe('Node flags', () => {
  it('the CLI carries its Node flags on its #! line, and the Docker image starts it through that line', async () => {
    const cli = await readFile(new URL('../../src/cli/index.ts', import.meta.url), 'utf8');
    const dockerfile = await readFile(new URL('../../Dockerfile', import.meta.url), 'utf8');
    const shebang = /^#!\/usr\/bin\/env -S node((?: --[\w-]+=\S+)+)\n/.exec(cli);
    expect(shebang?.[1]).toContain('--max-semi-space-size=');
    expect(shebang?.[1]).toContain('--v8-pool-size=1');
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1] ?? '[]';
    expect((JSON.parse(entrypoint) as string[]).at(-1)).toBe('pgshelf');
    expect(dockerfile).toMatch(
      /^RUN ln -s \/app\/dist\/cli\/index\.js \/usr\/local\/bin\/pgshelf && chmod \+x /m,
    );
  });
});
