/**
 * Runs the built CLI (`dist/cli/index.js`) as a user would, as a child process: the file itself, so its
 * `#!/usr/bin/env -S node ...` line (with the Node flags it carries) is what starts it, as with `npx pgshelf`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Env } from '../../src/config/index.js';
import { baseEnv } from './env.js';

export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli/index.js');

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunningCli {
  readonly child: ChildProcess;
  readonly done: Promise<CliResult>;
  /** Output so far. */
  stdout(): string;
  stderr(): string;
}

export function startCli(args: string[], env: Env, cwd?: string): RunningCli {
  const child = spawn(CLI, args, {
    env: { ...baseEnv(), ...env },
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<CliResult>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err }));
  });
  return { child, done, stdout: () => out, stderr: () => err };
}

export async function runCli(args: string[], env: Env, cwd?: string): Promise<CliResult> {
  return startCli(args, env, cwd).done;
}

/** Waits until `check` returns a truthy value, polling; fails with `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T> | T,
  timeoutMs = 30_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Waits for the next whole second. Storage names carry whole seconds, so two backups started within one second
 * have no defined order: a test that needs "latest" to be the second one starts it after this.
 */
export async function nextSecond(): Promise<void> {
  await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 5));
}
