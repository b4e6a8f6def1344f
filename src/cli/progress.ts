import type { Progress } from '../jobs/context.js';
import { formatBytes, formatDuration } from './format.js';

/**
 * Renders job progress on stderr: one rewritten line on a terminal; otherwise (a pipe, a log file) a line every
 * few seconds that says it is progress, and one last line at the end, so no line reads like the final summary.
 */
export class ProgressLine {
  private lastPrint = 0;
  private drawn = false;
  private last: Progress | undefined;

  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly enabled = true,
  ) {}

  static describe(p: Progress): string {
    if (
      p.phase === 'restore' &&
      p.totalBytes !== undefined &&
      p.totalBytes > 0 &&
      p.bytesIn >= p.totalBytes
    ) {
      // The whole archive is read, but psql still runs what it was sent: index builds, constraints, the commit.
      return (
        `restore: all ${formatBytes(p.totalBytes)} read; building indexes / finishing, ` +
        `wrote ${formatBytes(p.bytesOut)}, ${formatDuration(p.elapsedMs)}`
      );
    }
    const pct =
      p.totalBytes && p.totalBytes > 0
        ? ` ${Math.min(100, (100 * p.bytesIn) / p.totalBytes).toFixed(1)}%`
        : '';
    const verb = p.phase === 'dump' ? 'dumped' : 'read';
    return (
      `${p.phase}:${pct} ${verb} ${formatBytes(p.bytesIn)}${p.totalBytes ? ` of ${formatBytes(p.totalBytes)}` : ''}` +
      `, wrote ${formatBytes(p.bytesOut)}, ${formatBytes(p.rate)}/s, ${formatDuration(p.elapsedMs)}`
    );
  }

  update(p: Progress): void {
    if (!this.enabled) return;
    const line = ProgressLine.describe(p);
    if (this.out.isTTY) {
      this.out.write(`\r\x1b[2K${line}`);
      this.drawn = true;
      return;
    }
    this.last = p;
    if (Date.now() - this.lastPrint >= 5000) {
      this.lastPrint = Date.now();
      this.out.write(`progress: ${line}\n`);
    }
  }

  /** A message about the job (a retry, a restart), on a line of its own. */
  note(message: string): void {
    if (this.drawn) this.out.write('\r\x1b[2K');
    this.drawn = false;
    this.out.write(`${message}\n`);
  }

  /** Ends the rewritten line so later output starts on a fresh one; on a pipe, prints the last progress seen. */
  done(): void {
    if (this.drawn) this.out.write('\n');
    this.drawn = false;
    if (this.last) this.out.write(`progress: ${ProgressLine.describe(this.last)} (final)\n`);
    this.last = undefined;
  }
}
