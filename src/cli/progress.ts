import cliProgress from 'cli-progress';
import type { Progress } from '../jobs/context.js';
import { formatBytes, formatDuration } from './format.js';

/** What the bar measures against: the archive's size for a restore, the database's size for a backup (a guess). */
function barTotal(p: Progress): { bytes: number; estimate: boolean } | undefined {
  if (p.totalBytes !== undefined && p.totalBytes > 0) return { bytes: p.totalBytes, estimate: false };
  if (p.estimatedBytes !== undefined && p.estimatedBytes > 0) {
    // pg_dump's SQL is usually smaller than the database on disk (no indexes), but may outgrow it.
    return { bytes: Math.max(p.estimatedBytes, p.bytesIn), estimate: true };
  }
  return undefined;
}

/** cli-progress's ETA: seconds, or 'NULL'/'INF' while it cannot tell. */
function formatEta(eta: unknown): string {
  return typeof eta === 'number' && Number.isFinite(eta) ? formatDuration(eta * 1000) : '--';
}

/**
 * Renders job progress on stderr. On a terminal, a live bar (cli-progress): bytes read of the total (the archive's
 * size; for a backup, the database's size as an estimate, marked `~`), rate and ETA. Off a terminal (a pipe, a log
 * file), a line every few seconds that says it is progress, and one last line at the end, so no line reads like
 * the final summary.
 */
export class ProgressLine {
  private lastPrint = 0;
  private drawn = false;
  private last: Progress | undefined;
  private bar: cliProgress.SingleBar | undefined;

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

  /** The bar's line: `dump [=====-----] 48% 1.2 GiB of ~2.5 GiB, 85.3 MiB/s, ETA 14.0 s, 15.2 s`. */
  static describeBar(p: Progress, bar: string, eta: unknown): string {
    const total = barTotal(p);
    if (!total) return ProgressLine.describe(p);
    if (!total.estimate && p.phase === 'restore' && p.bytesIn >= total.bytes) {
      return `${p.phase} [${bar}] ${ProgressLine.describe(p).replace(/^restore: /, '')}`;
    }
    const pct = Math.floor((100 * Math.min(p.bytesIn, total.bytes)) / total.bytes);
    return (
      `${p.phase} [${bar}] ${pct}% ${formatBytes(p.bytesIn)} of ${total.estimate ? '~' : ''}` +
      `${formatBytes(total.bytes)}, ${formatBytes(p.rate)}/s, ETA ${formatEta(eta)}, ${formatDuration(p.elapsedMs)}`
    );
  }

  update(p: Progress): void {
    if (!this.enabled) return;
    if (this.out.isTTY) {
      this.draw(p);
      return;
    }
    this.last = p;
    if (Date.now() - this.lastPrint >= 5000) {
      this.lastPrint = Date.now();
      this.out.write(`progress: ${ProgressLine.describe(p)}\n`);
    }
  }

  private draw(p: Progress): void {
    const total = barTotal(p);
    if (!total) {
      // Nothing to measure against (a job from an older worker): the numbers alone, on one rewritten line.
      this.out.write(`\r\x1b[2K${ProgressLine.describe(p)}`);
      this.drawn = true;
      return;
    }
    if (!this.bar) {
      this.bar = new cliProgress.SingleBar({
        stream: this.out,
        barsize: 20,
        etaBuffer: 30,
        fps: 4,
        hideCursor: false,
        linewrap: false,
        format: (options, params, payload: { p: Progress }) =>
          ProgressLine.describeBar(
            payload.p,
            cliProgress.Format.BarFormat(params.progress, options),
            params.eta,
          ),
      });
      this.bar.start(total.bytes, p.bytesIn, { p });
    } else {
      this.bar.setTotal(total.bytes);
      this.bar.update(p.bytesIn, { p });
    }
    this.drawn = true;
  }

  /** A message about the job (a retry, a restart), on a line of its own. */
  note(message: string): void {
    if (this.drawn) this.out.write('\r\x1b[2K');
    this.drawn = false;
    this.out.write(`${message}\n`);
  }

  /** Ends the live line so later output starts on a fresh one; on a pipe, prints the last progress seen. */
  done(): void {
    if (this.bar) {
      this.bar.stop(); // draws the last state, then a newline
      this.bar = undefined;
    } else if (this.drawn) {
      this.out.write('\n');
    }
    this.drawn = false;
    if (this.last) this.out.write(`progress: ${ProgressLine.describe(this.last)} (final)\n`);
    this.last = undefined;
  }
}
