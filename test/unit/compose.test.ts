/** docker-compose.yml, checked by reading (no Docker engine here): pinned images, real services and settings. */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SETTINGS } from '../../src/config/index.js';

interface Service {
  image?: string;
  build?: unknown;
  environment?: Record<string, unknown> | string[];
  depends_on?: Record<string, unknown> | string[];
  command?: string[];
  ports?: string[];
  healthcheck?: { test?: string[] };
}

async function compose(): Promise<{ services: Record<string, Service> }> {
  const text = await readFile(new URL('../../docker-compose.yml', import.meta.url), 'utf8');
  return parse(text, { merge: true }) as { services: Record<string, Service> };
}

/** `name:tag` with a tag that names a version: digits, and no floating `latest`. */
function pinned(image: string): boolean {
  const at = image.lastIndexOf(':');
  if (at <= image.lastIndexOf('/')) return false; // no tag at all
  const tag = image.slice(at + 1);
  return !/latest/i.test(tag) && /^v?\d+\.\d+/.test(tag);
}

describe('docker-compose.yml', () => {
  it('pins every image to a version (x.y at least), and the Dockerfile base image too', async () => {
    const { services } = await compose();
    const images = Object.entries(services)
      .filter(([, s]) => s.image !== undefined)
      .map(([name, s]) => [name, s.image!] as const);
    expect(images.length).toBeGreaterThan(0);
    expect(images.filter(([, image]) => !pinned(image))).toEqual([]);
    expect(images.map(([, i]) => i).filter((i) => /minio/i.test(i))).toEqual([]);
    const dockerfile = await readFile(new URL('../../Dockerfile', import.meta.url), 'utf8');
    const bases = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]!);
    expect(bases.length).toBeGreaterThan(0);
    expect(bases.filter((b) => !pinned(b))).toEqual([]);
    // Every service either pulls a pinned image or is built from this repository.
    expect(Object.entries(services).filter(([, s]) => !s.image && !s.build)).toEqual([]);
  });

  it('has PostgreSQL, Redis, an S3 server with a bucket-creating init service, a worker and a scheduler', async () => {
    const { services } = await compose();
    expect(Object.keys(services)).toEqual(
      expect.arrayContaining(['postgres', 'redis', 'seaweedfs', 'seaweedfs-init', 'worker', 'scheduler']),
    );
    expect(JSON.stringify(services['seaweedfs-init'])).toContain('s3.bucket.create -name pgshelf');
    expect(services.worker?.depends_on).toMatchObject({
      'seaweedfs-init': { condition: 'service_completed_successfully' },
    });
  });

  it('depends_on names only services that exist', async () => {
    const { services } = await compose();
    const names = new Set(Object.keys(services));
    const missing = Object.entries(services).flatMap(([name, s]) => {
      const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
      return deps.filter((d) => !names.has(d)).map((d) => `${name} -> ${d}`);
    });
    expect(missing).toEqual([]);
  });

  it("gives pgshelf's services only real settings (SETTINGS) or AWS/S3 names, and storage it can reach", async () => {
    const { services } = await compose();
    const known = new Set(SETTINGS.map((s) => s.name));
    for (const name of ['worker', 'scheduler', 'serve']) {
      const env = services[name]?.environment;
      expect(env, name).toBeDefined();
      const keys = Array.isArray(env) ? env.map((e) => e.split('=')[0]!) : Object.keys(env!);
      expect(keys.filter((k) => !known.has(k) && !/^(AWS|S3)_/.test(k))).toEqual([]);
      const vars = env as Record<string, string>;
      // The endpoint names the S3 service of this file.
      const host = new URL(vars.S3_ENDPOINT!).hostname;
      expect(Object.keys(services)).toContain(host);
      expect(new URL(vars.REDIS_URL!).hostname).toBe('redis');
      expect(vars.POSTGRES_HOST).toBe('postgres');
    }
  });

  it('runs `pgshelf serve` beside the worker and scheduler: with a token (it listens off loopback), published on the host loopback, health-checked', async () => {
    const { services } = await compose();
    const serve = services.serve;
    expect(serve?.command).toEqual(['serve']);
    const env = serve!.environment as Record<string, string>;
    expect(env.PGSHELF_HTTP_HOST).toBe('0.0.0.0');
    // serve refuses a non-loopback address without a token of 16 characters or more.
    const token = /^\$\{PGSHELF_HTTP_TOKEN:-(.+)\}$/.exec(env.PGSHELF_HTTP_TOKEN ?? '')?.[1];
    expect(token?.length).toBeGreaterThanOrEqual(16);
    expect(serve!.ports).toEqual([`127.0.0.1:${env.PGSHELF_HTTP_PORT}:${env.PGSHELF_HTTP_PORT}`]);
    expect(JSON.stringify(serve!.healthcheck?.test)).toContain(`127.0.0.1:${env.PGSHELF_HTTP_PORT}/healthz`);
    // The same storage and Redis as the worker, so it reports what the worker does.
    const worker = services.worker!.environment as Record<string, string>;
    for (const k of ['PGSHELF_STORAGE', 'REDIS_URL', 'PGSHELF_QUEUE_PREFIX', 'POSTGRES_DB', 'S3_ENDPOINT']) {
      expect(env[k], k).toBe(worker[k]);
    }
  });
});
