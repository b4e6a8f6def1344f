import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

/**
 * Printed by the CLI's process as it exits: the packages of every CommonJS module it loaded. A data: module
 * given with --import, so the probe is no file of the project and the CLI starts through its own #! line.
 */
const probe =
  'data:text/javascript,' +
  encodeURIComponent(
    "import { createRequire } from 'node:module';" +
      "const cache = createRequire('/').cache;" +
      "process.on('exit', () => process.stderr.write('\\nLOADED ' + JSON.stringify([...new Set(Object.keys(cache)" +
      '.map((f) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(f)?.[1]).filter(Boolean))]) + "\\n"));',
  );

function loadedPackages(stderr: string): string[] {
  const line = stderr.split('\n').find((l) => l.startsWith('LOADED '));
  if (!line) throw new Error(`the probe printed nothing:\n${stderr}`);
  return JSON.parse(line.slice('LOADED '.length)) as string[];
}

describe('what a pgshelf process loads', () => {
  it('commands other than serve leave its HTTP stack unloaded (a worker carried ~10 MB of it)', async () => {
    const r = await runCli(['--version'], { NODE_OPTIONS: `--import=${probe}` });
    expect(r.code).toBe(0);
    const loaded = loadedPackages(r.stderr);
    // The probe sees what the CLI loaded: bullmq is a CommonJS package every command imports.
    expect(loaded).toContain('bullmq');
    expect(loaded.filter((p) => ['express', 'prom-client', '@bull-board/api'].includes(p))).toEqual([]);
  });
});
