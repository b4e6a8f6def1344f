/**
 * The SQL of a server's globals (`pg_dumpall --globals-only`), read statement by statement and allowed only as
 * far as pg_dumpall writes it: roles (CREATE/ALTER ROLE, their comments and security labels, role settings),
 * role memberships, parameter privileges, tablespaces and their privileges, and pg_dumpall's few SET lines.
 * Anything else, and any psql meta-command but pg_dumpall's own `\restrict` lines, fails naming the line. A
 * database restore refuses all of these on purpose (sql-lexer.ts); this is their one, explicit path.
 */
import { UnsafeArchiveError } from '../errors.js';

interface Token {
  readonly type: 'word' | 'ident' | 'string' | 'number' | 'punct';
  /** Words upper-cased; identifiers as PostgreSQL reads them (unquoted ones folded to lower case). */
  readonly value: string;
  /** For words: the name PostgreSQL would make of it (lower case). */
  readonly name: string;
}

/** One statement of the globals, with what it is about. */
export interface GlobalsStatement {
  /** The statement's SQL text, with its semicolon. */
  readonly sql: string;
  /** Line of the archive where it starts. */
  readonly line: number;
  readonly kind: 'set' | 'role' | 'membership' | 'parameter' | 'tablespace';
  /** CREATE ROLE: the role it creates. */
  readonly createsRole?: string;
  /** The roles it changes (role statements: the role; memberships: the members; parameter grants: grantees). */
  readonly roles: readonly string[];
  /** The role named by GRANTED BY, and the statement without that clause (for a grantor that does not exist). */
  readonly grantor?: string;
  readonly sqlWithoutGrantor?: string;
  /** CREATE TABLESPACE: the tablespace it creates; other tablespace statements: the one they change. */
  readonly createsTablespace?: string;
  readonly tablespace?: string;
}

const RESTRICT_LINE = /^\\(?:un)?restrict [0-9A-Za-z]{1,128}$/;
const SETTABLE = new Set(['default_transaction_read_only', 'client_encoding', 'standard_conforming_strings']);

/** Splits and classifies globals SQL; throws UnsafeArchiveError naming the line of anything not allowed. */
export function parseGlobals(sql: string): GlobalsStatement[] {
  const out: GlobalsStatement[] = [];
  let i = 0;
  let line = 1;
  let standardStrings = true;
  let tokens: Token[] = [];
  let start = -1;
  let startLine = 1;
  const n = sql.length;
  const fail = (at: number, what: string): never => {
    throw new UnsafeArchiveError(
      `line ${at} of the globals archive ${what}. pg_dumpall --globals-only never writes this; the archive was ` +
        'altered or does not come from pg_dumpall. Nothing was applied; restore the globals of another slot, ' +
        'or check the file by hand',
    );
  };
  const push = (t: Token, at: number): void => {
    if (tokens.length === 0) {
      start = at;
      startLine = line;
    }
    tokens.push(t);
  };
  while (i < n) {
    const c = sql[i]!;
    const lineStart = i === 0 || sql[i - 1] === '\n';
    if (c === '\n') {
      line++;
      i++;
    } else if (c === ' ' || c === '\t') {
      i++;
    } else if (c === '\\') {
      const end = sql.indexOf('\n', i);
      const text = sql.slice(i, end === -1 ? n : end);
      if (!lineStart || tokens.length > 0 || !RESTRICT_LINE.test(text)) {
        fail(line, `is a psql meta-command (${JSON.stringify(text.slice(0, 24))})`);
      }
      i = end === -1 ? n : end;
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? n : end;
    } else if (c === '/' && sql[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '\n') line++;
        const pair = sql.slice(i, i + 2);
        depth += pair === '/*' ? 1 : pair === '*/' ? -1 : 0;
        i += pair === '/*' || pair === '*/' ? 2 : 1;
      }
      if (depth > 0) fail(line, 'ends inside a comment');
    } else if (c === "'" || ((c === 'E' || c === 'e') && sql[i + 1] === "'")) {
      const escapes = c !== "'" || !standardStrings;
      const at = i;
      const first = line;
      i += c === "'" ? 1 : 2;
      let value = '';
      for (;;) {
        if (i >= n) fail(first, 'ends inside a quoted string');
        const d = sql[i]!;
        if (d === '\n') line++;
        if (d === "'" && sql[i + 1] === "'") {
          value += "'";
          i += 2;
        } else if (d === "'") {
          i++;
          break;
        } else if (d === '\\' && escapes) {
          value += sql[i + 1] ?? '';
          i += 2;
        } else {
          value += d;
          i++;
        }
      }
      push({ type: 'string', value, name: value }, at);
    } else if (c === '"') {
      const at = i;
      i++;
      let value = '';
      for (;;) {
        if (i >= n) fail(line, 'ends inside a quoted identifier');
        if (sql[i] === '"' && sql[i + 1] === '"') {
          value += '"';
          i += 2;
        } else if (sql[i] === '"') {
          i++;
          break;
        } else {
          if (sql[i] === '\n') line++;
          value += sql[i];
          i++;
        }
      }
      push({ type: 'ident', value, name: value }, at);
    } else if (/[A-Za-z_\u0080-\uffff]/.test(c)) {
      const m = /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/.exec(sql.slice(i, i + 128))!;
      push({ type: 'word', value: m[0].toUpperCase(), name: m[0].toLowerCase() }, i);
      i += m[0].length;
    } else if (/[0-9]/.test(c)) {
      const m = /^[0-9]+(?:\.[0-9]+)?/.exec(sql.slice(i, i + 64))!;
      if (/[A-Za-z_]/.test(sql[i + m[0].length] ?? '')) fail(line, 'has a number run into a word');
      push({ type: 'number', value: m[0], name: m[0] }, i);
      i += m[0].length;
    } else if (c === ';') {
      if (tokens.length === 0) fail(line, 'has an empty statement');
      const stmt = classify(tokens, sql.slice(start, i + 1), startLine, fail);
      if (stmt.kind === 'set') {
        const [, name, , value] = tokens;
        if (name?.name === 'standard_conforming_strings') standardStrings = value?.name === 'on';
      }
      out.push(stmt);
      tokens = [];
      i++;
    } else if ('(),=.-+'.includes(c)) {
      push({ type: 'punct', value: c, name: c }, i);
      i++;
    } else {
      fail(line, `has ${JSON.stringify(c)} outside quotes, which pg_dumpall does not write there`);
    }
  }
  if (tokens.length > 0) fail(startLine, 'ends with a statement without its semicolon');
  return out;
}

function classify(
  tokens: readonly Token[],
  sql: string,
  line: number,
  fail: (line: number, what: string) => never,
): GlobalsStatement {
  const w = (k: number): string => (tokens[k]?.type === 'word' ? tokens[k].value : '');
  const nameAt = (k: number): string => {
    const t = tokens[k];
    if (!t || (t.type !== 'word' && t.type !== 'ident'))
      fail(line, 'has a statement without a name where one belongs');
    if (
      t.type === 'word' &&
      ['ALL', 'PUBLIC', 'CURRENT_USER', 'SESSION_USER', 'CURRENT_ROLE'].includes(t.value)
    ) {
      fail(line, `names ${t.value} where pg_dumpall names a role`);
    }
    return t.name;
  };
  const what = tokens
    .slice(0, 3)
    .map((t) => t.value)
    .join(' ');
  const base = { sql, line };
  // SET name = value / TO value: the session settings pg_dumpall starts with.
  if (w(0) === 'SET') {
    const name = tokens[1]?.name ?? '';
    const value = tokens[3];
    if (
      tokens.length !== 4 ||
      !SETTABLE.has(name) ||
      !['=', 'TO'].includes(tokens[2]?.value ?? '') ||
      !value
    ) {
      fail(line, `has ${JSON.stringify(sql.slice(0, 60))}, a SET pg_dumpall does not write`);
    }
    if (name === 'client_encoding' && value.name.toUpperCase().replace(/[-_]/g, '') !== 'UTF8') {
      fail(line, `sets client_encoding to ${value.name}: pgshelf applies globals written in UTF8 only`);
    }
    return { ...base, kind: 'set', roles: [] };
  }
  const onIndex = tokens.findIndex((t) => t.type === 'word' && t.value === 'ON');
  // Roles: CREATE ROLE r; ALTER ROLE r ...; COMMENT ON ROLE r IS '...'; SECURITY LABEL [FOR p] ON ROLE r IS '...'.
  if (w(0) === 'CREATE' && w(1) === 'ROLE') {
    const role = nameAt(2);
    if (tokens.length !== 3)
      fail(line, 'has a CREATE ROLE with options (pg_dumpall sets them with ALTER ROLE)');
    return { ...base, kind: 'role', createsRole: role, roles: [role] };
  }
  if (w(0) === 'ALTER' && w(1) === 'ROLE') {
    if (w(3) === 'RENAME') fail(line, 'renames a role');
    return { ...base, kind: 'role', roles: [nameAt(2)] };
  }
  const labelOn = w(0) === 'SECURITY' && w(1) === 'LABEL' && onIndex > 1 ? onIndex : -1;
  const commentOn = w(0) === 'COMMENT' && w(1) === 'ON' ? 1 : labelOn;
  if (commentOn > 0 && w(commentOn + 1) === 'ROLE') {
    return { ...base, kind: 'role', roles: [nameAt(commentOn + 2)] };
  }
  if (commentOn > 0 && w(commentOn + 1) === 'TABLESPACE') {
    return { ...base, kind: 'tablespace', tablespace: nameAt(commentOn + 2), roles: [] };
  }
  // Tablespaces: CREATE TABLESPACE t OWNER r LOCATION '...'; ALTER TABLESPACE t SET (...).
  if (w(0) === 'CREATE' && w(1) === 'TABLESPACE') {
    const ts = nameAt(2);
    return { ...base, kind: 'tablespace', createsTablespace: ts, tablespace: ts, roles: [] };
  }
  if (w(0) === 'ALTER' && w(1) === 'TABLESPACE') {
    if (w(3) === 'RENAME' || w(3) === 'OWNER')
      fail(line, `has ${what} ${w(3)}, which pg_dumpall does not write`);
    return { ...base, kind: 'tablespace', tablespace: nameAt(2), roles: [] };
  }
  if (w(0) === 'GRANT' || w(0) === 'REVOKE') {
    const to = tokens.findIndex((t) => t.type === 'word' && t.value === (w(0) === 'GRANT' ? 'TO' : 'FROM'));
    if (to < 0) fail(line, `has a ${w(0)} without ${w(0) === 'GRANT' ? 'TO' : 'FROM'}`);
    const grantees = names(tokens, to + 1);
    if (onIndex > 0 && onIndex < to) {
      // Privileges on a tablespace or a parameter (PostgreSQL 15): nothing else belongs to the globals.
      const object = w(onIndex + 1);
      if (object === 'TABLESPACE') {
        return { ...base, kind: 'tablespace', tablespace: nameAt(onIndex + 2), roles: grantees };
      }
      if (object === 'PARAMETER') return { ...base, kind: 'parameter', roles: grantees };
      fail(line, `has a ${w(0)} ON ${object}, which is not part of a server's globals`);
    }
    if (w(0) === 'REVOKE') fail(line, 'revokes a role membership');
    // GRANT role[, ...] TO member[, ...] [WITH ...] [GRANTED BY grantor]
    const by = tokens.findIndex((t, k) => t.type === 'word' && t.value === 'GRANTED' && w(k + 1) === 'BY');
    const grantor = by > 0 ? nameAt(by + 2) : undefined;
    return {
      ...base,
      kind: 'membership',
      roles: grantees,
      ...(grantor !== undefined
        ? { grantor, sqlWithoutGrantor: sql.replace(/\s+GRANTED BY\s+("(?:[^"]|"")+"|[^\s;]+)\s*;$/i, ';') }
        : {}),
    };
  }
  return fail(line, `has ${JSON.stringify(sql.slice(0, 60))}, which is not part of a server's globals`);
}

/** The names of a list (`a, "B", c`) from token `from` on, up to the first word that is not a name. */
function names(tokens: readonly Token[], from: number): string[] {
  const out: string[] = [];
  for (let k = from; k < tokens.length; k += 2) {
    const t = tokens[k]!;
    if (t.type !== 'word' && t.type !== 'ident') break;
    if (t.type === 'word' && ['WITH', 'GRANTED'].includes(t.value)) break;
    out.push(t.type === 'word' && t.value === 'PUBLIC' ? 'PUBLIC' : t.name);
    if (tokens[k + 1]?.value !== ',') break;
  }
  return out;
}

/** What applying the globals on a server holding `roles` and `tablespaces` runs and leaves alone. */
export interface GlobalsPlan {
  /** Role statements, run in one transaction. */
  readonly roleStatements: readonly GlobalsStatement[];
  /** Tablespace statements, run one by one after it (CREATE TABLESPACE cannot run in a transaction). */
  readonly tablespaceStatements: readonly GlobalsStatement[];
  readonly createRoles: readonly string[];
  /** Roles the archive has that already exist: left as they are, every statement about them dropped. */
  readonly existingRoles: readonly string[];
  readonly createTablespaces: readonly string[];
  readonly existingTablespaces: readonly string[];
  /** Statements dropped because they concern an existing role or tablespace (or PUBLIC). */
  readonly skipped: number;
}

/**
 * Which statements to run: those about roles and tablespaces the server does not have yet. An existing role is
 * never altered: its ALTER ROLE, comment, settings, memberships (as a member) and parameter grants are dropped.
 * A GRANTED BY naming a role that exists nowhere is left out (the grant is recorded under the admin role).
 */
export function planGlobals(
  statements: readonly GlobalsStatement[],
  roles: ReadonlySet<string>,
  tablespaces: ReadonlySet<string>,
): GlobalsPlan {
  const created = new Set(
    statements.flatMap((s) => (s.createsRole && !roles.has(s.createsRole) ? [s.createsRole] : [])),
  );
  const newTs = new Set(
    statements.flatMap((s) =>
      s.createsTablespace && !tablespaces.has(s.createsTablespace) ? [s.createsTablespace] : [],
    ),
  );
  const existingRoles = [
    ...new Set(statements.flatMap((s) => (s.createsRole && roles.has(s.createsRole) ? [s.createsRole] : []))),
  ];
  const existingTablespaces = [
    ...new Set(
      statements.flatMap((s) =>
        s.createsTablespace && tablespaces.has(s.createsTablespace) ? [s.createsTablespace] : [],
      ),
    ),
  ];
  const roleStatements: GlobalsStatement[] = [];
  const tablespaceStatements: GlobalsStatement[] = [];
  let skipped = 0;
  for (const s of statements) {
    if (s.kind === 'set') {
      roleStatements.push(s);
      continue;
    }
    const rolesNew = s.roles.length > 0 ? s.roles.every((r) => created.has(r)) : true;
    if (s.kind === 'tablespace') {
      if (s.tablespace !== undefined && newTs.has(s.tablespace) && rolesNew) tablespaceStatements.push(s);
      else skipped++;
      continue;
    }
    if (!rolesNew || s.roles.length === 0) {
      skipped++;
      continue;
    }
    if (s.grantor !== undefined && !roles.has(s.grantor) && !created.has(s.grantor)) {
      roleStatements.push({ ...s, sql: s.sqlWithoutGrantor ?? s.sql });
    } else roleStatements.push(s);
  }
  return {
    roleStatements,
    tablespaceStatements,
    createRoles: [...created],
    existingRoles,
    createTablespaces: [...newTs],
    existingTablespaces,
    skipped,
  };
}
