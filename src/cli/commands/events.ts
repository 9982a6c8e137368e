// `shoal events` and `shoal watch`: the event log (a page of it, or followed live) with each
// event's node by name, and a live table of nodes.
import type { EventList, EventView, NodeList } from '../../api/views.js';
import { enc, type CliValues } from '../args.js';
import type { ApiClient } from '../client.js';
import { phaseColour, renderNodeTable } from '../table.js';

export async function eventsCommand(client: ApiClient, values: CliValues): Promise<number> {
  const names = await nodeNames(client);
  const print = (e: EventView) => {
    learnNodeName(names, e);
    const node = e.nodeId === null ? '-' : (names.get(e.nodeId) ?? e.nodeId.slice(0, 8));
    console.log(
      `${String(e.rev).padStart(8)} ${new Date(e.at).toISOString()} ${e.kind.padEnd(8)} ${node} ${e.facet} ${e.old ?? '∅'} → ${e.new ?? '∅'}${e.detail ? ` (${e.detail})` : ''} by ${e.writer}`,
    );
  };
  let after = Number(values.after ?? 0);
  if (!values.follow) {
    const query = new URLSearchParams({ after: String(after) });
    if (values.node) query.set('node', values.node as string);
    const { events } = await client.request<EventList>('GET', `/events?${query}`);
    events.forEach(print);
    return 0;
  }
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  await client
    .stream(after, (e) => ((after = e.rev), print(e as unknown as EventView)), abort.signal)
    .catch((err: Error) => {
      if (err.name !== 'AbortError') throw err;
    });
  return 0;
}

/** Node names by id: the enrolled nodes now, and from the log itself those enrolled or removed since. */
async function nodeNames(client: ApiClient): Promise<Map<string, string>> {
  const { nodes } = await client.request<NodeList>('GET', '/nodes');
  return new Map(nodes.map((n) => [n.id, n.name]));
}

/** A node event carries the node's spec as JSON: the new one, or the last one when it was removed. */
function learnNodeName(names: Map<string, string>, e: EventView): void {
  const spec = e.kind === 'node' && e.nodeId !== null ? (e.new ?? e.old) : null;
  if (spec === null) return;
  try {
    const { name } = JSON.parse(spec) as { name?: unknown };
    if (typeof name === 'string') names.set(e.nodeId!, name);
  } catch {
    // not a spec; the id stands in for the name
  }
}

export async function watchCommand(client: ApiClient, selector: unknown): Promise<number> {
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  const query = selector ? `?selector=${enc(selector as string)}` : '';
  while (!abort.signal.aborted) {
    const { nodes, counts, revision } = await client.request<NodeList>('GET', `/nodes${query}`);
    const rows = process.stdout.rows ? Math.max(5, process.stdout.rows - 4) : 40;
    process.stdout.write('\x1b[H\x1b[2J');
    console.log(`shoal watch — ${client.base} — revision ${revision} — ${Object.entries(counts).map(([p, n]) => `${phaseColour(p, p)} ${n}`).join('  ')}`);
    console.log(renderNodeTable(nodes.slice(0, rows)));
    if (nodes.length > rows) console.log(`… ${nodes.length - rows} more (narrow with --selector)`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  return 0;
}
