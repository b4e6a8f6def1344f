/**
 * Starts the S3-compatible servers the integration tests use, once for the whole run:
 * - s3rver, in-process (always), unless S3_TEST_ENDPOINT names another server (MinIO, moto) to use instead;
 * - moto_server, when installed, for what s3rver lacks (listing and aborting incomplete multipart uploads).
 * Checks that PostgreSQL and Redis answer, so a missing service fails fast with a clear message.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { freePort, portAnswers } from './ports.js';

declare module 'vitest' {
  export interface ProvidedContext {
    s3Endpoint: string;
    motoEndpoint: string | null;
  }
}

async function waitForPort(port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await portAnswers(port)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

async function which(cmd: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const file = path.join(dir, cmd);
    try {
      await (await import('node:fs/promises')).access(file, 1);
      return file;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  for (const [name, port] of [
    ['PostgreSQL', 5432],
    ['Redis', 6379],
  ] as const) {
    if (!(await waitForPort(port, 2000))) {
      throw new Error(
        `${name} is not answering on 127.0.0.1:${port}: start it (see .ci/run) before the tests`,
      );
    }
  }
  const cleanups: (() => Promise<void>)[] = [];

  let s3Endpoint = process.env.S3_TEST_ENDPOINT;
  if (!s3Endpoint) {
    const { default: S3rver } = await import('s3rver');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-s3rver-'));
    const port = await freePort();
    const server = new S3rver({ port, address: '127.0.0.1', silent: true, directory: dir });
    await server.run();
    s3Endpoint = `http://127.0.0.1:${port}`;
    cleanups.push(async () => {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    });
  }

  let motoEndpoint: string | null = null;
  const moto = await which('moto_server');
  if (moto) {
    const port = await freePort();
    const child: ChildProcess = spawn(moto, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    if (await waitForPort(port, 20_000)) {
      motoEndpoint = `http://127.0.0.1:${port}`;
      cleanups.push(() => {
        child.kill('SIGTERM');
        return Promise.resolve();
      });
    } else {
      child.kill('SIGKILL');
    }
  }

  project.provide('s3Endpoint', s3Endpoint);
  project.provide('motoEndpoint', motoEndpoint);
  return async () => {
    for (const c of cleanups.reverse()) await c();
  };
}
