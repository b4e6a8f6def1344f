#!/usr/bin/env -S node --max-semi-space-size=1 --v8-pool-size=1
// The flag keeps V8's young generation at 1 MiB per semi-space (default: up to 16). A backup or restore streams
// hundreds of MiB through short-lived buffers; with the default, V8 grows the young generation to its maximum
// and the worker's peak RSS during an S3 backup measured 151-179 MB; with 1 MiB, 124-135 MB, at no measurable
// cost in speed (npm run bench). --v8-pool-size=1: one V8 helper thread instead of four (GC and compilation; the
// machine's cores go to pg_dump, gzip and psql): 4-8 MB less RSS, idle and at the peak. Anyone starting
// `node dist/cli/index.js` directly should pass the same flags.
import { Command, CommanderError } from 'commander';
import { createRequire } from 'node:module';
import { SETTINGS } from '../config/index.js';
import { CommandFailed, ConfigError, PgshelfError, errorMessage } from '../errors.js';
import { registerBackup } from './commands/backup.js';
import { registerList } from './commands/list.js';
import { registerDrill, registerRestore, registerVerify } from './commands/restore.js';
import { registerRestoreServer } from './commands/restore-server.js';
import { registerPrune, registerScheduler } from './commands/schedule.js';
import { registerServe } from './commands/serve.js';
import { registerStatus } from './commands/status.js';
import { registerWorker } from './commands/worker.js';
import { printJsonError, Runtime } from './runtime.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

/** The README's Markdown, for a terminal: code spans lose their backticks, links their target. */
const plain = (markdown: string): string =>
  markdown.replace(/`/g, '').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1 in the README');

export function buildProgram(): Command {
  // The longest name sets the column, so every meaning starts at the same place.
  const NAME_WIDTH = Math.max(...SETTINGS.map((s) => s.name.length));
  const program = new Command('pgshelf');
  let rt: Runtime | undefined;
  // The one place process.env is read: config parses it, nothing else looks at it.
  const runtime = (level?: string): Runtime => (rt ??= Runtime.load(process.env, level));
  program
    .version(version)
    .description('PostgreSQL backups: scheduled, streamed, verified, restorable by hand')
    .showHelpAfterError()
    .exitOverride()
    .addHelpText(
      'after',
      '\nSettings (environment variables):\n' +
        SETTINGS.map(
          (s) => `  ${s.name.padEnd(NAME_WIDTH)} ${plain(s.meaning)} (default: ${plain(s.default)})`,
        ).join('\n'),
    );
  registerBackup(program, runtime);
  registerRestore(program, runtime);
  registerRestoreServer(program, runtime);
  registerList(program, runtime);
  registerDrill(program, runtime);
  registerVerify(program, runtime);
  registerPrune(program, runtime);
  registerWorker(program, runtime);
  registerScheduler(program, runtime);
  registerServe(program, runtime);
  registerStatus(program, runtime);
  program.hook('postAction', async () => {
    await rt?.close();
  });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // With --json, a failure is one JSON document on stdout too, so `| jq` never reads empty input.
  const json = argv.slice(2).includes('--json');
  const fail = (name: string, message: string, exitCode: number): number => {
    if (json) printJsonError(name, message, exitCode);
    return exitCode;
  };
  try {
    await program.parseAsync(argv);
    // A command that succeeded but reports a state worth exiting 1 for (`status`) sets process.exitCode.
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and --version exit 0; every usage error exits 2 (commander has printed the message and help)
      if (err.exitCode === 0) return 0;
      return fail('UsageError', err.message.replace(/^error: /, ''), 2);
    }
    if (err instanceof CommandFailed) {
      process.stderr.write(`pgshelf: ${err.message}\n`);
      return fail(
        err.exitCode === 130 || err.exitCode === 143 ? 'Interrupted' : 'JobFailed',
        err.message,
        err.exitCode,
      );
    }
    const code = err instanceof ConfigError ? 2 : 1;
    process.stderr.write(`pgshelf: ${errorMessage(err)}\n`);
    return fail(err instanceof PgshelfError ? err.name : 'Error', errorMessage(err), code);
  }
}

// `pgshelf list | head` closes stdout early: that is the reader's choice, not a failure to report.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`pgshelf: ${errorMessage(err)}\n`);
    process.exitCode = 1;
  },
);
