/**
 * The PGSHELF_CONFIG file: several databases, each with its own connection, schedule, time zone, retention and
 * drill schedule. Parsed strictly: an unknown key, a bad cron expression or time zone stops pgshelf at start-up
 * with the file, the line, the key and an example.
 *
 *   defaults:                      # optional; every database inherits these
 *     host: db.internal
 *     user: backup
 *     password_env: BACKUP_PASSWORD  # name of an environment variable holding the password
 *     sslmode: verify-full           # libpq's sslmode; sslrootcert: the CA file (relative to this file)
 *     sslrootcert: root.crt
 *     timezone: Europe/Paris
 *     retention: { keep_last: 7, daily: 7, weekly: 4, monthly: 12, yearly: 2, min_keep: 3 }
 *   databases:
 *     - name: app
 *       schedule: "0 2 * * *"
 *       drill_schedule: "0 5 * * 0"
 *     - name: analytics
 *       host: analytics.internal
 *       schedule: "30 3 * * *"
 *       webhook_url: https://alerts.example.com/pgshelf   # adds to PGSHELF_WEBHOOK_URL (and defaults')
 *       ping_url: https://hc-ping.com/<uuid>               # this database's own check
 *   servers:                       # every database of a server, found anew at each slot, and its globals
 *     - host: pg2.internal
 *       discover: { include: ["app_*"], exclude: ["app_tmp*"] }
 *       no_role_passwords: true      # pg_dumpall --no-role-passwords (managed services)
 */
import path from 'node:path';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import type { Node, YAMLMap } from 'yaml';
import { checkSsl } from './postgres.js';
import { RETENTION_SETTINGS, YAML_SETTINGS, type Setting, type YamlSetting } from './settings.js';
import type { AlertTargets, DatabaseTarget, Env, PgSettings, Retention, ServerTarget } from './types.js';
import { yamlNaming } from './validators.js';

/** yaml is loaded on first use: only a PGSHELF_CONFIG file needs it, and loading it cost 0.1 s of every start. */
let yamlModule: typeof Yaml | undefined;
const yamlLib = (): typeof Yaml => (yamlModule ??= createRequire(import.meta.url)('yaml') as typeof Yaml);
import { ConfigError } from '../errors.js';

const keysOf = (group: string): string[] =>
  YAML_SETTINGS.filter((s) => s.yaml.group === group).flatMap((s) =>
    s.yaml.secret ? [s.yaml.key, `${s.yaml.key}_env`] : [s.yaml.key],
  );
const CONNECTION_KEYS = keysOf('connection');
const SCHEDULE_KEYS = [...keysOf('schedule'), 'retention'];
const ALERT_KEYS = keysOf('alerts');
const DATABASE_KEYS = ['name', ...CONNECTION_KEYS, ...SCHEDULE_KEYS, ...ALERT_KEYS];
// A ping URL is one database's check: every database pinging the same one would hide which failed.
const DEFAULT_KEYS = [...CONNECTION_KEYS, ...SCHEDULE_KEYS, ...ALERT_KEYS.filter((k) => k !== 'ping_url')];
const SERVER_KEYS = [...DEFAULT_KEYS, 'discover', 'no_role_passwords'];
const DISCOVER_EXAMPLE = 'discover: { include: ["app_*"], exclude: ["*_tmp"] }';
const BY_KEY = new Map<string, YamlSetting>(YAML_SETTINGS.map((s) => [s.yaml.key, s]));
const RETENTION_EXAMPLE = `retention: { ${RETENTION_SETTINGS.map((s) => `${s.yaml.key}: ${s.setting.fallback}`).join(', ')} }`;
const EXAMPLES: Record<string, string> = {
  ...Object.fromEntries(
    YAML_SETTINGS.flatMap(({ yaml, setting }) => {
      const example = yaml.example ?? setting.example;
      // A secret's example points at the _env form: a password belongs in the environment, not in the file.
      return yaml.secret
        ? [
            [yaml.key, `${yaml.key}_env: ${example}`],
            [`${yaml.key}_env`, `${yaml.key}_env: ${example}`],
          ]
        : [[yaml.key, `${yaml.key}: ${example}`]];
    }),
  ),
  name: 'name: app',
  retention: RETENTION_EXAMPLE,
  defaults: 'defaults:\n  host: db.internal',
  databases: 'databases:\n  - name: app',
  servers: 'servers:\n  - host: db.internal\n    discover: { include: ["*"] }',
  discover: DISCOVER_EXAMPLE,
  no_role_passwords: 'no_role_passwords: true',
  include: 'include: ["app_*"]',
  exclude: 'exclude: ["*_tmp"]',
};

type Plain = Record<string, unknown>;

function example(key: string): string {
  return EXAMPLES[key] ?? `${key}: value`;
}

/** Settings a database inherits when its entry does not say otherwise. */
export interface Inherited {
  readonly postgres: Omit<PgSettings, 'database'>;
  readonly schedule: string;
  readonly timezone: string;
  readonly retention: Retention;
  readonly drillSchedule: string | undefined;
  readonly alerts: AlertTargets;
}

export interface ConfigFile {
  readonly databases: DatabaseTarget[];
  readonly servers: ServerTarget[];
}

export function parseConfigFile(text: string, file: string, inherited: Inherited, env: Env): ConfigFile {
  const lines = new (yamlLib().LineCounter)();
  const doc = yamlLib().parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const at = (node: Node | null | undefined): string => {
    const offset = node?.range?.[0];
    return offset === undefined ? file : `${file}:${lines.linePos(offset).line}`;
  };
  const fail = (node: Node | null | undefined, message: string): ConfigError =>
    new ConfigError(`${at(node)}: ${message}`);
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    // Without prettyErrors the error carries only offsets: the line comes from the line counter.
    const line = e.linePos?.[0]?.line ?? lines.linePos(e.pos[0]).line;
    throw new ConfigError(
      `${file}:${line}: not valid YAML: ${e.message.split('\n')[0]} (check the indentation: entries of a ` +
        'list or mapping line up, with spaces, not tabs)',
    );
  }
  const root = doc.contents;
  if (!yamlLib().isMap(root)) {
    throw fail(root, 'expected a mapping with a "databases" list, e.g.\ndatabases:\n  - name: app');
  }
  checkKeys(root, ['defaults', 'databases', 'servers'], 'the top level', fail);

  const defaultsNode = root.get('defaults', true) as Node | undefined;
  let base = inherited;
  if (defaultsNode !== undefined) {
    if (!yamlLib().isMap(defaultsNode))
      throw fail(defaultsNode, '"defaults" must be a mapping, e.g. defaults:\n  host: db.internal');
    checkKeys(defaultsNode, DEFAULT_KEYS, '"defaults"', fail);
    base = applyEntry(defaultsNode, base, 'defaults', env, fail, file);
  }

  const list = root.get('databases', true) as Node | undefined;
  const serverList = root.get('servers', true) as Node | undefined;
  if (serverList !== undefined && (!yamlLib().isSeq(serverList) || serverList.items.length === 0)) {
    throw fail(serverList, `"servers" must be a non-empty list, e.g.\n${EXAMPLES.servers}`);
  }
  if (!yamlLib().isSeq(list) || list.items.length === 0) {
    if (list !== undefined || serverList === undefined) {
      throw fail(
        list ?? root,
        '"databases" must be a non-empty list, e.g.\ndatabases:\n  - name: app\n    schedule: "0 2 * * *"' +
          ' (or list whole servers under "servers:")',
      );
    }
  }
  const seen = new Set<string>();
  const databases = (yamlLib().isSeq(list) ? list.items : []).map((item, i) => {
    const where = `databases[${i}]`;
    if (!yamlLib().isMap(item)) throw fail(item as Node, `${where} must be a mapping, e.g. - name: app`);
    checkKeys(item, DATABASE_KEYS, where, fail);
    const nameNode = item.get('name', true) as Node | undefined;
    const name = yamlLib().isScalar(nameNode) ? nameNode.value : undefined;
    if (typeof name !== 'string' || name === '')
      throw fail(nameNode ?? item, `${where}.name must be a database name, e.g. name: app`);
    if (seen.has(name)) throw fail(nameNode, `database "${name}" is listed twice`);
    seen.add(name);
    const s = applyEntry(item, base, where, env, fail, file);
    return Object.freeze({
      name,
      // Named in connection errors, so a hint points at this entry rather than at POSTGRES_DB.
      postgres: Object.freeze({ ...s.postgres, database: name, origin: `${file}: ${where} (name: ${name})` }),
      schedule: s.schedule,
      timezone: s.timezone,
      retention: s.retention,
      drillSchedule: s.drillSchedule,
      alerts: s.alerts,
    });
  });
  const seenServers = new Set<string>();
  const servers = (yamlLib().isSeq(serverList) ? serverList.items : []).map((item, i): ServerTarget => {
    const where = `servers[${i}]`;
    if (!yamlLib().isMap(item))
      throw fail(item as Node, `${where} must be a mapping, e.g. - host: db.internal`);
    checkKeys(item, SERVER_KEYS, where, fail);
    const s = applyEntry(item, base, where, env, fail, file);
    const id = `${s.postgres.host}:${s.postgres.port}`;
    if (seenServers.has(id)) throw fail(item, `server ${id} is listed twice`);
    seenServers.add(id);
    const discover = item.get('discover', true) as Node | undefined;
    let include = ['*'];
    let exclude: string[] = [];
    if (discover !== undefined) {
      if (!yamlLib().isMap(discover))
        throw fail(discover, `${where}.discover must be a mapping, e.g. ${DISCOVER_EXAMPLE}`);
      checkKeys(discover, ['include', 'exclude'], `${where}.discover`, fail);
      const globs = (key: 'include' | 'exclude'): string[] | undefined => {
        const n = discover.get(key, true) as Node | undefined;
        if (n === undefined) return undefined;
        const items = yamlLib().isSeq(n) ? n.items : [n];
        return items.map((g) => {
          const v = yamlLib().isScalar(g) ? g.value : undefined;
          if (typeof v !== 'string' || v === '') {
            throw fail(g as Node, `${where}.discover.${key} must be a list of globs, e.g. ${example(key)}`);
          }
          return v;
        });
      };
      include = globs('include') ?? include;
      exclude = globs('exclude') ?? exclude;
    }
    const nrp = item.get('no_role_passwords', true) as Node | undefined;
    let noRolePasswords = false;
    if (nrp !== undefined) {
      if (!yamlLib().isScalar(nrp) || typeof nrp.value !== 'boolean') {
        throw fail(nrp, `${where}.no_role_passwords must be true or false, e.g. no_role_passwords: true`);
      }
      noRolePasswords = nrp.value;
    }
    return Object.freeze({
      id,
      // Discovery and the globals connect to the postgres database, as pg_dumpall does.
      postgres: Object.freeze({ ...s.postgres, database: 'postgres', origin: `${file}: ${where} (${id})` }),
      schedule: s.schedule,
      timezone: s.timezone,
      retention: s.retention,
      drillSchedule: s.drillSchedule,
      include: Object.freeze(include),
      exclude: Object.freeze(exclude),
      noRolePasswords,
      alerts: s.alerts,
    });
  });
  return { databases, servers };
}

function checkKeys(
  map: YAMLMap,
  allowed: readonly string[],
  where: string,
  fail: (n: Node | null | undefined, m: string) => ConfigError,
): void {
  for (const pair of map.items) {
    const key = yamlLib().isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    if (!allowed.includes(key)) {
      const close = allowed.find((k) => distance(k, key.toLowerCase().replace(/-/g, '_')) <= 2);
      throw fail(
        pair.key as Node,
        `unknown key "${key}" in ${where}${close ? `; did you mean "${close}"?` : '.'} Expected one of ` +
          `${allowed.join(', ')}, e.g. ${example(close ?? allowed[allowed.length - 1]!)}`,
      );
    }
  }
}

function applyEntry(
  map: YAMLMap,
  base: Inherited,
  where: string,
  env: Env,
  fail: (n: Node | null | undefined, m: string) => ConfigError,
  file: string,
): Inherited {
  const node = (key: string): Node | undefined => map.get(key, true);
  const text = (key: string): string | undefined => {
    const n = node(key);
    if (n === undefined) return undefined;
    if (
      !yamlLib().isScalar(n) ||
      (typeof n.value !== 'string' && typeof n.value !== 'number') ||
      n.value === ''
    ) {
      throw fail(n, `${where}.${key} must be a text value, e.g. ${example(key)}`);
    }
    return String(n.value);
  };
  const secret = (key: string): string | undefined => {
    const fromEnv = text(`${key}_env`);
    if (fromEnv !== undefined) {
      const value = env[fromEnv];
      if (value === undefined || value === '') {
        throw fail(
          node(`${key}_env`),
          `${where}.${key}_env names ${fromEnv}, which is not set in the environment`,
        );
      }
      return value;
    }
    return text(key);
  };
  /** The key's value through its setting's validator, so the file and the environment accept the same. */
  const parsed = <T>(key: string, label = `${where}.${key}`, n = node(key)): T | undefined => {
    if (n === undefined) return undefined;
    const { setting, yaml } = BY_KEY.get(key)!;
    const v = yamlLib().isScalar(n) ? n.value : undefined;
    const raw = typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : '';
    try {
      return (setting as Setting<T>).parse(raw, yamlNaming(label, key), yaml.example ?? setting.example);
    } catch (err) {
      throw fail(n, (err as Error).message);
    }
  };
  const pgBase = base.postgres;
  const port = parsed<number>('port') ?? pgBase.port;
  const host = text('host') === undefined ? pgBase.host : parsed<string>('host')!;
  const user = text('user') ?? pgBase.user;
  const password = secret('password') ?? (text('user') !== undefined ? undefined : pgBase.password);
  const adminUser = text('admin_user') ?? (text('user') !== undefined ? user : pgBase.adminUser);
  const adminPassword =
    secret('admin_password') ??
    (text('admin_user') !== undefined
      ? undefined
      : text('user') !== undefined
        ? password
        : pgBase.adminPassword);

  let ssl = { sslMode: pgBase.sslMode, sslRootCert: pgBase.sslRootCert };
  if (node('sslmode') !== undefined || node('sslrootcert') !== undefined) {
    const names = { mode: `${where}.sslmode`, rootCert: `${where}.sslrootcert`, sep: ': ' };
    try {
      ssl = checkSsl(
        text('sslmode') ?? pgBase.sslMode,
        text('sslrootcert') ?? pgBase.sslRootCert,
        path.dirname(file),
        names,
      );
    } catch (err) {
      throw fail(node('sslmode') ?? node('sslrootcert'), (err as Error).message);
    }
  }

  text('schedule');
  text('drill_schedule');
  text('timezone');
  const schedule = parsed<string>('schedule') ?? base.schedule;
  const drillSchedule = parsed<string>('drill_schedule') ?? base.drillSchedule;
  const timezone = parsed<string>('timezone') ?? base.timezone;

  let retention = base.retention;
  const r = node('retention');
  if (r !== undefined) {
    if (!yamlLib().isMap(r)) throw fail(r, `${where}.retention must be a mapping, e.g. ${RETENTION_EXAMPLE}`);
    checkKeys(
      r,
      RETENTION_SETTINGS.map((s) => s.yaml.key),
      `${where}.retention`,
      fail,
    );
    const next: Plain = { ...retention };
    for (const { yaml, field } of RETENTION_SETTINGS) {
      const v = parsed<number>(yaml.key, `${where}.retention.${yaml.key}`, r.get(yaml.key, true));
      if (v !== undefined) next[field] = v;
    }
    retention = Object.freeze(next) as unknown as Retention;
  }
  // webhook_url adds to what the entry inherits (PGSHELF_WEBHOOK_URL, defaults'); ping_url is the entry's own.
  let webhooks = base.alerts.webhooks;
  const hooks = node('webhook_url');
  if (hooks !== undefined) {
    const items = yamlLib().isSeq(hooks) ? (hooks.items as Node[]) : [hooks];
    const added = items.flatMap((item, i) => {
      const label = yamlLib().isSeq(hooks) ? `${where}.webhook_url[${i}]` : `${where}.webhook_url`;
      return parsed<readonly string[]>('webhook_url', label, item) ?? [];
    });
    webhooks = Object.freeze([...new Set([...webhooks, ...added])]);
  }
  const ping = parsed<string>('ping_url');
  const alerts: AlertTargets = Object.freeze({
    webhooks,
    pings: ping === undefined ? base.alerts.pings : Object.freeze([ping]),
  });
  return {
    alerts,
    postgres: Object.freeze({
      ...pgBase,
      port,
      user,
      password,
      adminUser,
      adminPassword,
      ...ssl,
      host,
    }),
    schedule,
    timezone,
    retention,
    drillSchedule,
  };
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}
