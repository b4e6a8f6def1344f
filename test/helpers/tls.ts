/**
 * A throwaway PostgreSQL cluster that takes TLS connections only, with a CA and a server certificate made here.
 * Started as the `postgres` OS user in a temporary folder on a free port; stop() removes everything.
 */
import { execFile } from 'node:child_process';
import { appendFile, chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

const run = promisify(execFile);
const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface TlsCluster {
  readonly dir: string;
  readonly port: number;
  /** The UNIX socket directory (no TLS there), for set-up. */
  readonly socketDir: string;
  /** CA that signed the server certificate (for 127.0.0.1 and localhost; the server also listens on 127.0.0.2). */
  readonly caFile: string;
  /** A CA that signed nothing the server has. */
  readonly wrongCaFile: string;
  stop(): Promise<void>;
}

/** Runs openssl with a space-separated argument list (no argument here contains a space). */
async function openssl(args: string, cwd: string): Promise<void> {
  await run('openssl', args.split(' '), { cwd });
}

const EC = '-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';

/** A CA (key and self-signed certificate) named `name` in `dir`. */
async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(
    `req -x509 ${EC} -keyout ${name}.key -out ${name}.crt -days 2 -subj /CN=pgshelf-test-${name} ` +
      '-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign',
    dir,
  );
}

export async function startTlsCluster(): Promise<TlsCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-tls-'));
  const data = path.join(dir, 'data');
  const port = await freePort();
  await makeCa(dir, 'ca');
  await makeCa(dir, 'wrong-ca');
  await writeFile(path.join(dir, 'san.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  await openssl(`req -new ${EC} -keyout server.key -out server.csr -subj /CN=localhost`, dir);
  await openssl(
    'x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.cnf',
    dir,
  );
  await chmod(path.join(dir, 'server.key'), 0o600);
  await chmod(dir, 0o755);
  await run('chown', ['-R', 'postgres:postgres', dir]);
  const asPostgres = (cmd: string, args: string[]) =>
    run('runuser', ['-u', 'postgres', '--', path.join(PG_BIN, cmd), ...args], { cwd: dir });
  await asPostgres('initdb', [
    '-D',
    data,
    '--auth=trust',
    '--username=postgres',
    '--no-sync',
    '--no-instructions',
  ]);
  await appendFile(
    path.join(data, 'postgresql.conf'),
    [
      `port = ${port}`,
      "listen_addresses = '127.0.0.1,127.0.0.2'",
      `unix_socket_directories = '${dir}'`,
      'ssl = on',
      `ssl_cert_file = '${dir}/server.crt'`,
      `ssl_key_file = '${dir}/server.key'`,
      'fsync = off',
      'shared_buffers = 16MB',
      'max_connections = 20',
      '',
    ].join('\n'),
  );
  await writeFile(
    path.join(data, 'pg_hba.conf'),
    [
      'local all all trust',
      'hostssl all all 127.0.0.0/8 trust',
      'hostnossl all all 127.0.0.0/8 reject',
      '',
    ].join('\n'),
  );
  await asPostgres('pg_ctl', ['-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '30', 'start']);
  return {
    dir,
    port,
    socketDir: dir,
    caFile: path.join(dir, 'ca.crt'),
    wrongCaFile: path.join(dir, 'wrong-ca.crt'),
    async stop() {
      await asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
