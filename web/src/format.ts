// How sizes, digests and times read on the page.

/** Decimal units, one decimal: "812 bytes", "12.3 kB", "2.1 MB", "1.4 GB". */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} byte${bytes === 1 ? '' : 's'}`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** `sha256:` and the first 12 hex digits: enough to tell images apart at a glance. */
export function shortDigest(digest: string): string {
  return digest.replace(/^(sha256:[0-9a-f]{12})[0-9a-f]+$/, '$1…');
}

export function formatTime(at: string | number | undefined): string {
  if (at === undefined) return '';
  const date = new Date(at);
  return Number.isNaN(date.getTime()) ? String(at) : date.toLocaleString();
}

/** "5 s ago", "3 min ago", "2 h ago", or the date. */
export function ago(at: string | number, now = Date.now()): string {
  const seconds = Math.round((now - new Date(at).getTime()) / 1000);
  if (!Number.isFinite(seconds)) return String(at);
  if (seconds < 60) return `${Math.max(0, seconds)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return formatTime(at);
}

/** Up to `max` names, then how many more. */
export function someNames(names: string[], max = 5): string {
  return names.slice(0, max).join(', ') + (names.length > max ? `, … (${names.length - max} more)` : '');
}
