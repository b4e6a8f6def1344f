declare module 'parse-prometheus-text-format' {
  export interface ParsedSample {
    readonly value: string;
    readonly labels?: Record<string, string>;
    readonly timestamp_ms?: string;
  }
  export interface ParsedFamily {
    readonly name: string;
    readonly help: string;
    /** Upper case: GAUGE, COUNTER, HISTOGRAM, SUMMARY, UNTYPED. */
    readonly type: string;
    readonly metrics: readonly ParsedSample[];
  }
  export default function parsePrometheusTextFormat(text: string): ParsedFamily[];
}
