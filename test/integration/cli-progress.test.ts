/**
 * Progress as a user sees it: a live bar on a terminal (a real pseudo-terminal, from util-linux's `script`),
 * periodic `progress:` lines on a pipe.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { CLI, runCli, type CliResult } from '../helpers/cli.js';
import { baseEnv } from '../helpers/env.js';
import { daemon, useCleanup, workerFixture } from '../helpers/lifecycle.js';
import { withClient } from '../helpers/pg.js';

const defer = useCleanup();

/** Runs the CLI with stdout and stderr on a pseudo-terminal: `script` gives back what the terminal received. */
function onTerminal(args: string[], env: Env): Promise<CliResult> {
  const command = [CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('script', ['-qfec', command, '/dev/null'], {
    // Commands log at warn by default (the fixture's info is for the worker): only the bar on the terminal.
    env: { ...baseEnv(), ...env, PGSHELF_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: '' })),
  );
}

/** The states the terminal showed: the text between carriage returns and cursor moves, escapes removed. */
function frames(terminal: string): string[] {
  const esc = '\x1b';
  return terminal
    .split(new RegExp(`\r|${esc}\\[1G|${esc}8|\n`))
    .map((s) => s.replace(new RegExp(`${esc}\\[[0-9;?]*[A-Za-z]|${esc}[78]`, 'g'), '').trim())
    .filter(Boolean);
}

const BAR =
  /^dump \[[=-]{20}\] \d{1,3}% [\d.]+ (B|KiB|MiB) of ~[\d.]+ (KiB|MiB), [\d.]+ (B|KiB|MiB)\/s, ETA (--|[\d.]+ s|\d+m\d\ds), [\d.]+ (ms|s)$/;

async function fixture(): Promise<Awaited<ReturnType<typeof workerFixture>>> {
  const f = await workerFixture(defer, { rows: 2000 });
  // Some megabytes of SQL, so the dump is not over before the first report.
  await withClient(f.db, (c) =>
    c.query(
      `CREATE TABLE filler AS SELECT i, md5(i::text) AS a, md5((i + 1)::text) AS b FROM generate_series(1, 200000) i`,
    ),
  );
  return f;
}

describe('progress', () => {
  it('on a terminal: a live bar for an in-process backup (bytes of the database size, rate, ETA) and restore', async () => {
    const f = await fixture();
    const backup = await onTerminal(['backup', '--in-process'], f.env);
    expect(backup.code, backup.stdout).toBe(0);
    const shown = frames(backup.stdout);
    const bars = shown.filter((l) => l.startsWith('dump ['));
    expect(bars.length).toBeGreaterThan(0);
    for (const b of bars) expect(b).toMatch(BAR);
    expect(shown.some((l) => l.startsWith('progress:'))).toBe(false);
    // The bar ends before the summary, on a line of its own.
    expect(backup.stdout).toMatch(/\n[^\n]*backup [0-9a-f]{8} of "/);

    const into = `${f.db}_r`;
    defer(() => withClient('postgres', (c) => c.query(`DROP DATABASE IF EXISTS "${into}"`)));
    const restore = await onTerminal(['restore', '--into', into, '--in-process'], f.env);
    expect(restore.code, restore.stdout).toBe(0);
    const rbars = frames(restore.stdout).filter((l) => l.startsWith('restore ['));
    expect(rbars.length).toBeGreaterThan(0);
    for (const b of rbars) {
      expect(b).toMatch(
        /^restore \[[=-]{20}\] (\d{1,3}% [\d.]+ (B|KiB|MiB) of [\d.]+ (KiB|MiB), [\d.]+ (B|KiB|MiB)\/s, ETA |all [\d.]+ (KiB|MiB) read; building indexes \/ finishing)/,
      );
    }
  });

  it('on a terminal: the same bar for a queued backup, from the worker through BullMQ', async () => {
    const f = await fixture();
    const worker = daemon('worker', f.env, defer);
    await expect.poll(() => worker.stderr(), { timeout: 30_000 }).toContain('worker started');
    const backup = await onTerminal(['backup'], f.env);
    expect(backup.code, backup.stdout).toBe(0);
    const bars = frames(backup.stdout).filter((l) => l.startsWith('dump ['));
    expect(bars.length).toBeGreaterThan(0);
    for (const b of bars) expect(b).toMatch(BAR);
  });

  it('off a terminal: periodic progress lines as before, no bar and no escape sequences', async () => {
    const f = await fixture();
    const res = await runCli(['backup', '--in-process'], f.env);
    expect(res.code, res.stderr).toBe(0);
    const progress = res.stderr.split('\n').filter((l) => l.startsWith('progress: '));
    expect(progress.length).toBeGreaterThan(0);
    for (const l of progress) {
      expect(l).toMatch(
        /^progress: dump: dumped [\d.]+ (B|KiB|MiB), wrote [\d.]+ (B|KiB|MiB), [\d.]+ (B|KiB|MiB)\/s, [\d.]+ (ms|s)( \(final\))?$/,
      );
    }
    expect(progress.at(-1)).toMatch(/ \(final\)$/);
    expect(res.stderr).not.toContain('\x1b');
    expect(res.stderr).not.toContain('[=');
  });
});
