/**
 * Private services for fault tests: each is the test's own, on a free port, so stopping it harms no other test.
 * Never point these at the shared PostgreSQL (5432) or Redis (6379).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chown, mkdtemp, rm, appendFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort, portAnswers } from './ports.js';

const execFileAsync = promisify(execFile);

async function waitForPort(port: number, up: boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await portAnswers(port)) !== up) {
    if (Date.now() > deadline) throw new Error(`${what} on port ${port} did not ${up ? 'start' : 'stop'}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

type Defer = (fn: () => Promise<unknown>) => void;

export interface PrivateRedis {
  readonly port: number;
  readonly url: string;
  /** SIGTERM, as `systemctl stop redis` does: Redis flushes its append-only file and exits. */
  stop(): Promise<void>;
  /** Starts again on the same port and directory: the AOF brings the queued jobs back. */
  start(): Promise<void>;
}

/**
 * redis-server as a deployment configures it for BullMQ: `--appendonly yes` in a directory of its own, so a
 * restart keeps the jobs. Removed after the test.
 */
export async function privateRedis(defer: Defer): Promise<PrivateRedis> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-fault-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes'];
    child = spawn('redis-server', [...args, '--save', '', '--daemonize', 'no'], { stdio: 'ignore' });
    await waitForPort(port, true, 'redis-server');
  };
  const stop = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  };
  defer(async () => {
    await stop();
    await rm(dir, { recursive: true, force: true });
  });
  await start();
  return { port, url: `redis://127.0.0.1:${port}`, stop, start };
}

const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface Cluster {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** pg_ctl restart -m fast: every session is terminated, as on a server restart or failover. */
  restart(): Promise<void>;
  query<R extends pg.QueryResultRow>(database: string, sql: string, params?: unknown[]): Promise<R[]>;
}

const isRoot = process.getuid?.() === 0;

/** Runs a PostgreSQL tool; as root, as the `postgres` OS user (initdb and the server refuse to run as root). */
async function asPostgres(tool: string, args: string[]): Promise<void> {
  const file = path.join(PG_BIN, tool);
  await execFileAsync(isRoot ? 'runuser' : file, isRoot ? ['-u', 'postgres', '--', file, ...args] : args, {
    maxBuffer: 4 << 20,
  });
}

/**
 * A throwaway PostgreSQL 15 cluster: initdb in a temp dir, trust auth, on a free TCP port of 127.0.0.1, its socket
 * in its own directory. Stopped and removed after the test.
 */
export async function throwawayCluster(defer: Defer): Promise<Cluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-fault-cluster-'));
  if (isRoot) {
    const { uid, gid } = await postgresIds();
    await chown(dir, uid, gid);
  }
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'server.log');
  const port = await freePort();
  defer(async () => {
    await asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', 'stop']).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  await asPostgres('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8']);
  // A test cluster: durability is not under test, speed is.
  await appendFile(
    path.join(data, 'postgresql.conf'),
    `port = ${port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '${dir}'\n` +
      `fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n`,
  );
  await asPostgres('pg_ctl', ['-D', data, '-l', log, '-w', 'start']);
  const connect = async (database: string): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database });
    await c.connect();
    return c;
  };
  return {
    host: '127.0.0.1',
    port,
    user: 'postgres',
    restart: () => asPostgres('pg_ctl', ['-D', data, '-l', log, '-m', 'fast', '-w', 'restart']),
    query: async <R extends pg.QueryResultRow>(database: string, sql: string, params: unknown[] = []) => {
      const c = await connect(database);
      try {
        return (await c.query<R>(sql, params)).rows;
      } finally {
        await c.end();
      }
    },
  };
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const { stdout: uid } = await execFileAsync('id', ['-u', 'postgres']);
  const { stdout: gid } = await execFileAsync('id', ['-g', 'postgres']);
  return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
}

export interface Link {
  /** Where clients connect: a port of its own in front of the target. */
  readonly port: number;
  /** Resets every open connection and stops listening: clients see a stopped server (reset, then refused). */
  cut(): Promise<void>;
  /** Listens again on the same port. */
  restore(): Promise<void>;
}

/**
 * A TCP relay in front of a server, to take that server off the network and bring it back on the same port while
 * its own state (a bucket, its multipart uploads) stays, as it does when a real S3 service restarts.
 */
export async function tcpLink(targetPort: number, defer: Defer): Promise<Link> {
  const port = await freePort();
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  const restore = async (): Promise<void> => {
    const srv = net.createServer((client) => {
      const upstream = net.connect(targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.once('close', () => sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.once('close', () => upstream.destroy());
      upstream.once('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', () => resolve());
    });
    server = srv;
  };
  const cut = async (): Promise<void> => {
    const srv = server;
    server = undefined;
    for (const s of sockets) s.resetAndDestroy();
    sockets.clear();
    if (srv) await new Promise((r) => srv.close(r));
  };
  defer(cut);
  await restore();
  return { port, cut, restore };
}

export interface PrivateS3rver {
  readonly endpoint: string;
  /** Its data directory: buckets, objects, and the parts of unfinished multipart uploads. */
  readonly dir: string;
  /** SIGTERM: the process exits at once, dropping its connections; the data directory stays. */
  stop(): Promise<void>;
  /** Starts again on the same port and data directory. */
  start(): Promise<void>;
}

/** s3rver as a process of its own with a data directory, so it can be stopped and started like a real server. */
export async function privateS3rver(defer: Defer): Promise<PrivateS3rver> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-fault-s3rver-'));
  const port = await freePort();
  const bin = fileURLToPath(new URL('../../node_modules/s3rver/bin/s3rver.js', import.meta.url));
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    const args = [bin, '-d', dir, '-a', '127.0.0.1', '-p', String(port), '-s'];
    child = spawn(process.execPath, args, { stdio: 'ignore' });
    await waitForPort(port, true, 's3rver');
  };
  const stop = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  };
  defer(async () => {
    await stop();
    await rm(dir, { recursive: true, force: true });
  });
  await start();
  return { endpoint: `http://127.0.0.1:${port}`, dir, stop, start };
}
