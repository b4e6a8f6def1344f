/**
 * A restore on several psql sessions, fed by a SqlGuard in split mode. Statements run in order on the first
 * session, in transactions; each table's COPY rows spread over the sessions, cut at row ends, while the archive
 * streams (never held: when every session's input is full, reading waits); consecutive index builds (CREATE INDEX,
 * ADD PRIMARY KEY/UNIQUE) run side by side. Everything else waits for the work before it: the archive's order
 * holds wherever it could matter.
 */
import { Writable } from 'node:stream';
import { RestoreFailedError, UnsafeArchiveError } from '../errors.js';
import type { Child, ExitStatus } from '../postgres/child.js';
import type { PsqlSession } from '../postgres/psql-session.js';
import type { Piece } from './sql-filter.js';

const IDENT = '(?:"(?:[^"\\n]|"")+"|[A-Za-z_\\u0080-\\uffff][A-Za-z0-9_$\\u0080-\\uffff]*)';
const NAME = `${IDENT}(?:\\.${IDENT})*`;
/** pg_dump's index builds: they depend on the table's rows only, not on one another. */
const INDEX_BUILD = new RegExp(
  `^(?:CREATE (?:UNIQUE )?INDEX ${IDENT} ON (?:ONLY )?${NAME} USING [^\\n]*;|` +
    `ALTER TABLE ONLY ${NAME}\\n +ADD CONSTRAINT ${IDENT} (?:PRIMARY KEY|UNIQUE) \\([^\\n]*;)$`,
);
/** Session settings pg_dump writes (every session needs them): the name of what each one sets. */
const SETTING =
  /^(?:SET ([a-z_][a-z0-9_.]*) (?:=|TO) [^\n;]*;|SET (SESSION AUTHORIZATION|ROLE) [^\n;]*;|RESET (SESSION AUTHORIZATION|ROLE);)$/;
const SET_CONFIG = /^SELECT pg_catalog\.set_config\('([a-z_][a-z0-9_.]*)', '[^'\n]*', false\);$/;
const NOT_SESSION = new Set(['local', 'session', 'transaction', 'constraints']);
/** Statements longer than this are not held to be looked at: they run in order on the first session. */
const UNIT_HOLD = 1 << 20;

type Mode = 'start' | 'ordered' | 'rows' | 'indexes';

interface Unit {
  readonly line: number;
  pieces: Buffer[];
  bytes: number;
  statements: number;
  /** Too long to hold: already streaming to the first session. */
  streaming: boolean;
}

interface Copy {
  readonly head: Buffer;
  readonly line: number;
  readonly what: string;
  /** Sessions that have this COPY open. */
  readonly open: PsqlSession[];
  current: PsqlSession | undefined;
  /** The last piece ended inside a row: the next one goes to the same session. */
  midRow: boolean;
}

export class ParallelSink extends Writable {
  private mode: Mode = 'start';
  private unit: Unit | undefined;
  private copy: Copy | undefined;
  private readonly settings = new Map<string, { text: Buffer; version: number }>();
  private settingsVersion = 0;
  /** Sessions running an index build. */
  private readonly building = new Set<PsqlSession>();
  /** The session whose failure failed the restore. */
  failed: PsqlSession | undefined;

  private readonly sessions: PsqlSession[] = [];

  /**
   * `open(i)` starts session i (0 to jobs - 1). The first starts at once; the others when side-by-side work first
   * comes (while the first still runs the schema), so an archive without data starts none.
   */
  constructor(
    private readonly jobs: number,
    private readonly open: (index: number) => PsqlSession,
  ) {
    super({ objectMode: true, highWaterMark: 4 });
    this.sessions.push(open(0));
  }

  /** Called by a session that ended early or with an error. */
  onSessionFailure(session: PsqlSession): void {
    if (this.failed) return;
    this.failed = session;
    for (const s of this.sessions) if (s !== session) s.kill();
    if (!this.destroyed) this.destroy(this.describe(session));
  }

  /** psql's child and exit status for the restore's error message (its stderr), and where in the archive. */
  failure(): { child: Child; status: ExitStatus | undefined; where: string } | undefined {
    const s = this.failed;
    if (!s) return undefined;
    const n = this.jobs;
    return {
      child: s.child,
      status: s.status,
      where: `session ${s.index + 1} of ${n}${s.last ? `, ${s.last}` : ''}`,
    };
  }

  killAll(): void {
    for (const s of this.sessions) s.kill();
  }

  override _write(piece: Piece, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.handle(piece).then(
      () => callback(),
      (err: unknown) => callback(err as Error),
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.finish().then(
      () => callback(),
      (err: unknown) => callback(err as Error),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // psql commits what it has when its input ends: on a failure it must die first.
    if (error) this.killAll();
    callback(error);
  }

  private describe(s: PsqlSession): Error {
    return s.failure ?? new RestoreFailedError(`psql session ${s.index + 1} failed`);
  }

  private get main(): PsqlSession {
    return this.sessions[0]!;
  }

  private async handle(piece: Piece): Promise<void> {
    switch (piece.kind) {
      case 'sql':
        return this.sql(piece);
      case 'copy':
        return this.copyStart(piece);
      case 'rows':
        return this.rows(piece);
      case 'copyEnd':
        return this.copyEnd();
    }
  }

  private async sql(piece: Extract<Piece, { kind: 'sql' }>): Promise<void> {
    const unit = (this.unit ??= {
      line: piece.line,
      pieces: [],
      bytes: 0,
      statements: 0,
      streaming: false,
    });
    unit.statements += piece.statements;
    if (unit.streaming) {
      await this.send(this.main, piece.bytes);
    } else {
      unit.pieces.push(piece.bytes);
      unit.bytes += piece.bytes.length;
      if (unit.bytes > UNIT_HOLD) {
        await this.ordered();
        this.applySettings(this.main);
        this.main.write(Buffer.concat(unit.pieces));
        unit.pieces = [];
        unit.streaming = true;
        await this.main.drained();
      }
    }
    if (piece.boundary) {
      this.unit = undefined;
      if (!unit.streaming) await this.dispatch(unit);
    }
  }

  /** A complete stretch of SQL: a setting every session gets, an index build, or the next statements in order. */
  private async dispatch(unit: Unit): Promise<void> {
    if (unit.statements === 0) return; // blank lines and comments
    const bytes = unit.pieces.length === 1 ? unit.pieces[0]! : Buffer.concat(unit.pieces);
    const text = unit.statements === 1 ? bytes.toString('utf8').trim() : '';
    const setting = SETTING.exec(text) ?? SET_CONFIG.exec(text);
    const name = setting?.[1] ?? setting?.[2] ?? setting?.[3];
    if (name && !NOT_SESSION.has(name)) {
      this.settings.set(name.toLowerCase(), { text: bytes, version: ++this.settingsVersion });
      return;
    }
    if (INDEX_BUILD.test(text)) {
      await this.enter('indexes');
      const s = await this.idleSession();
      this.applySettings(s);
      s.write(bytes, `building the index of line ${unit.line} of the archive`);
      this.building.add(s);
      void s.sync().then(
        () => this.building.delete(s),
        () => undefined,
      );
      return;
    }
    await this.ordered();
    await this.send(this.main, bytes);
  }

  private async copyStart(piece: Extract<Piece, { kind: 'copy' }>): Promise<void> {
    const pending = this.unit;
    this.unit = undefined;
    const what = piece.bytes.toString('utf8').trim();
    if (!piece.alone || (pending && pending.statements > 0)) {
      // Not a COPY of pg_dump's own layout: it and its rows run in order on the first session.
      await this.ordered();
      if (pending) await this.send(this.main, Buffer.concat(pending.pieces));
      await this.send(this.main, piece.bytes);
      this.copy = { head: piece.bytes, line: piece.line, what, open: [], current: this.main, midRow: true };
      return;
    }
    await this.enter('rows');
    this.copy = { head: piece.bytes, line: piece.line, what, open: [], current: undefined, midRow: false };
  }

  private async rows(piece: Extract<Piece, { kind: 'rows' }>): Promise<void> {
    const copy = this.copy;
    if (!copy) throw new UnsafeArchiveError('COPY rows outside a COPY block');
    let s = copy.midRow ? copy.current : undefined;
    if (this.mode !== 'rows') s = this.main; // a COPY in order on the first session
    while (!s) {
      s = this.pickForRows(copy);
      if (!s) await Promise.race(this.sessions.map((x) => x.drained()));
    }
    if (this.mode === 'rows' && !copy.open.includes(s)) {
      this.applySettings(s);
      s.write(copy.head, `loading rows of the COPY of line ${copy.line} of the archive (${copy.what})`);
      copy.open.push(s);
    }
    s.write(piece.bytes);
    copy.current = s;
    copy.midRow = this.mode !== 'rows' || !piece.whole;
    // Waiting here only when this session must take the next piece too: otherwise another may.
    if (copy.midRow) await s.drained();
  }

  /** The session to take the next rows: the current one while it has room, then one with this COPY open, then any. */
  private pickForRows(copy: Copy): PsqlSession | undefined {
    if (copy.current?.writable) return copy.current;
    return copy.open.find((s) => s.writable) ?? this.sessions.find((s) => s.writable);
  }

  private async copyEnd(): Promise<void> {
    const copy = this.copy;
    this.copy = undefined;
    if (!copy) throw new UnsafeArchiveError('a COPY end outside a COPY block');
    if (this.mode !== 'rows') {
      await this.send(this.main, '\\.\n');
      return;
    }
    for (const s of copy.open) s.write('\\.\n');
  }

  /** The next statements run in order on the first session, in a transaction, after all work before them. */
  private async ordered(): Promise<void> {
    if (this.mode === 'ordered') return;
    await this.barrier();
    this.main.write('BEGIN;\n');
    this.mode = 'ordered';
  }

  /** Side-by-side work of one kind (rows, or index builds) starts after everything before it has run. */
  private async enter(mode: 'rows' | 'indexes'): Promise<void> {
    if (this.mode === mode) return;
    if (this.mode === 'ordered') this.main.write('COMMIT;\n');
    while (this.sessions.length < this.jobs) {
      if (this.destroyed) throw this.describe(this.failed ?? this.main);
      this.sessions.push(this.open(this.sessions.length));
    }
    await this.barrier();
    this.mode = mode;
  }

  private async barrier(): Promise<void> {
    await Promise.all(this.sessions.map((s) => s.sync()));
  }

  /** A session with no index build running, waiting for one to finish if all are busy. */
  private async idleSession(): Promise<PsqlSession> {
    for (;;) {
      const free = this.sessions.find((s) => !this.building.has(s));
      if (free) return free;
      await Promise.race([...this.building].map((s) => s.idle));
    }
  }

  private applySettings(s: PsqlSession): void {
    if (s.settingsVersion === this.settingsVersion) return;
    for (const { text, version } of this.settings.values()) {
      if (version > s.settingsVersion) s.write(text);
    }
    s.settingsVersion = this.settingsVersion;
  }

  private async send(s: PsqlSession, data: Buffer | string): Promise<void> {
    this.applySettings(s);
    s.write(data);
    await s.drained();
  }

  private async finish(): Promise<void> {
    if (this.unit && this.unit.statements > 0) {
      throw new UnsafeArchiveError(
        `the archive ends inside the statement that starts on line ${this.unit.line}: a restore on several ` +
          'sessions needs complete statements; restore it with PGSHELF_RESTORE_JOBS=1',
      );
    }
    if (this.copy) throw new UnsafeArchiveError('the archive ends inside a COPY block');
    if (this.mode === 'ordered') this.main.write('COMMIT;\n');
    await this.barrier();
    await Promise.all(this.sessions.map((s) => s.end()));
  }
}
