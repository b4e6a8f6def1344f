/** URLs as they may be printed or logged: the password, if any, replaced by ***. */
export function maskUrl(raw: string): string {
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    // Not a URL (a setting with a typo): masked by its shape below.
  }
  if (url && url.host !== '') {
    if (url.password === '') return raw;
    url.password = '***';
    return url.href;
  }
  const at = raw.lastIndexOf('@');
  if (at === -1) return raw;
  const slashes = raw.indexOf('//');
  const start =
    slashes !== -1 && slashes < at
      ? slashes + 2
      : (/^[A-Za-z][A-Za-z0-9+.-]*:\/+/.exec(raw)?.[0].length ?? 0);
  const colon = raw.indexOf(':', start);
  if (colon === -1 || colon > at) return raw;
  return `${raw.slice(0, colon + 1)}***${raw.slice(at)}`;
}

/**
 * A webhook or ping URL as it may be logged: scheme and host only. Slack-style webhooks and healthchecks.io pings
 * carry their secret in the path, so the path and query are shown as `/***`.
 */
export function maskSecretUrl(raw: string): string {
  try {
    const url = new URL(maskUrl(raw));
    const auth = url.username ? `${url.username}${url.password ? ':***' : ''}@` : '';
    const rest = url.pathname.length > 1 || url.search ? '/***' : '';
    return `${url.protocol}//${auth}${url.host}${rest}`;
  } catch {
    return '***';
  }
}
