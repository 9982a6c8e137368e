// Small hooks shared by the views.
import { useEffect, useState } from 'preact/hooks';
import type { Cluster } from './cluster.js';

/** Re-renders the caller once per animation frame in which the cluster changed. */
export function useCluster(cluster: Cluster): number {
  const [version, setVersion] = useState(cluster.version);
  useEffect(() => cluster.subscribe(() => setVersion(cluster.version)), [cluster]);
  return version;
}

/** The view named by the location hash: `#/`, `#/node/ID`, `#/images`, `#/discovered`, `#/import`. */
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
