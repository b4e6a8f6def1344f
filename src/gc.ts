/** V8's garbage collector, reached without a command-line flag: for the few places that free large buffers. */
import v8 from 'node:v8';
import vm from 'node:vm';

export type Gc = (options?: { type?: 'minor' | 'major' }) => void;
let gc: Gc | null | undefined;

/** V8's gc(), or null where it cannot be reached. */
export function getGc(): Gc | null {
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
