import v8 from 'node:v8';
import vm from 'node:vm';

type Gc = (options?: { type?: 'minor' | 'major' }) => void;
let gc: Gc | null | undefined;

function getGc(): Gc | null {
  if (gc === undefined) {
    const exposed = (globalThis as { gc?: Gc }).gc;
    if (exposed) {
      gc = exposed;
    } else {
      try {
        // The documented way to reach V8's gc() without a command-line flag: enable it, then read it from a
        // fresh context (the current one was created before the flag).
        v8.setFlagsFromString('--expose-gc');
        gc = vm.runInNewContext('gc') as Gc;
      } catch {
        gc = null;
      }
    }
  }
  return gc;
}

/**
 * Frees the dead stream buffers of a long pipeline every `interval` bytes. Each 64 KiB pipe read is a Buffer
 * whose memory lives outside V8's heap; V8 only collects them once tens of MiB have piled up, which is most of
 * a worker's peak RSS during a dump or restore. A young-generation collection every 8 MiB and a full one every
 * 64 MiB cost a few milliseconds per GiB and keep memory flat and low.
 */
export function garbageNudger(
  minorEvery = 8 * 1024 * 1024,
  majorEvery = 64 * 1024 * 1024,
): (bytes: number) => void {
  let nextMinor = minorEvery;
  let nextMajor = majorEvery;
  let seen = 0;
  return (bytes) => {
    seen += bytes;
    if (seen < nextMinor) return;
    nextMinor = seen + minorEvery;
    // Buffers that lived a few seconds (S3 parts in flight) have been promoted and need a full collection.
    const major = seen >= nextMajor;
    if (major) nextMajor = seen + majorEvery;
    getGc()?.({ type: major ? 'major' : 'minor' });
  };
}
