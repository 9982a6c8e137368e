// Small hooks shared by the views.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.js';
import type { Cluster } from './cluster.js';
import type { EventView } from '../../src/api/views.js';

/** How long a burst of events is gathered before the read it calls for. */
const REREAD_AFTER_MS = 300;

/** Re-renders the caller once per animation frame in which the cluster changed. */
export function useCluster(cluster: Cluster): number {
  const [version, setVersion] = useState(cluster.version);
  useEffect(() => cluster.subscribe(() => setVersion(cluster.version)), [cluster]);
  return version;
}

/** The view named by the location hash: `#/`, `#/node/ID`, `#/images`, `#/discovered`, `#/import`, `#/profiles`, `#/profile[/NAME]`. */
export function useRoute(): string[] {
  const read = () => location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const onChange = () => setRoute(read());
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  return route;
}

export function nodeHref(id: string): string {
  return `#/node/${encodeURIComponent(id)}`;
}

export function profileHref(name: string): string {
  return `#/profile/${encodeURIComponent(name)}`;
}

export interface Read<T> {
  value: T | null;
  /** The last read's failure; the value of an earlier read is kept beside it. */
  error: unknown;
  /** When `value` was read (Date.now()); 0 before the first answer. */
  at: number;
  reload: () => void;
}

/** GET `path` once, and again on `reload`; an answer is dropped when a later request has already answered. */
export function useRead<T>(path: string): Read<T> {
  const [state, setState] = useState<{ value: T | null; error: unknown; at: number }>({ value: null, error: null, at: 0 });
  const seq = useRef({ sent: 0, shown: 0 });
  const reload = useCallback(() => {
    const n = ++seq.current.sent;
    const keep = () => n > seq.current.shown && ((seq.current.shown = n), true);
    api<T>('GET', path).then(
      (value) => keep() && setState({ value, error: null, at: Date.now() }),
      (error: unknown) => keep() && setState((s) => ({ ...s, error })),
    );
  }, [path]);
  useEffect(reload, [reload]);
  return { ...state, reload };
}

/** useRead, and again every `everyMs` while the view is open: for what changes without an event on the stream. */
export function usePolledRead<T>(path: string, everyMs: number): Read<T> {
  const read = useRead<T>(path);
  useEffect(() => {
    const timer = setInterval(read.reload, everyMs);
    return () => clearInterval(timer);
  }, [read.reload, everyMs]);
  return read;
}

/**
 * Calls `reread` shortly after events that `matters` picks arrive, once per burst: profile records
 * carry no node state, so views of them re-read the API rather than patch themselves.
 */
export function useRereadOn(cluster: Cluster, matters: (e: EventView) => boolean, reread: () => void): void {
  const latest = useRef({ matters, reread });
  latest.current = { matters, reread };
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const off = cluster.onEvents((events) => {
      if (timer !== undefined || !events.some((e) => latest.current.matters(e))) return;
      timer = setTimeout(() => {
        timer = undefined;
        latest.current.reread();
      }, REREAD_AFTER_MS);
    });
    return () => {
      off();
      clearTimeout(timer);
    };
  }, [cluster]);
}
