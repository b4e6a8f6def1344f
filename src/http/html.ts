/**
 * HTML built by a tagged template that escapes every interpolated value, so a database name or backup id read
 * from storage (which whoever can write the bucket controls) is always text, never markup.
 */

/** Markup that is already safe: the result of `markup` or `raw`. Anything else interpolated is escaped. */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
  '`': '&#96;',
};

/** Escapes text for an element's content or a quoted attribute value. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => ESCAPES[c] ?? c);
}

type Value = SafeHtml | string | number | boolean | null | undefined | readonly Value[];

function render(value: Value): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return (value as readonly Value[]).map(render).join('');
  return escapeHtml(String(value));
}

/**
 * `markup\`<td>${name}</td>\``: the literal parts are markup, every value is escaped (arrays are joined). Not
 * named `html`, which Prettier would take for embedded HTML and reformat (changing the hashed stylesheet).
 */
export function markup(strings: TemplateStringsArray, ...values: Value[]): SafeHtml {
  let out = strings[0] ?? '';
  values.forEach((v, i) => (out += render(v) + (strings[i + 1] ?? '')));
  return new SafeHtml(out);
}

/** Trusted markup written in this code base (never data): the page's own CSS, for instance. */
export function raw(markup: string): SafeHtml {
  return new SafeHtml(markup);
}
