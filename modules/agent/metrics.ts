// The agent module's Prometheus metrics, on the appliance's registry (served at /metrics): what
// node agents sent and how it was answered, the actions the replies carried, and the nodes that
// went silent, so an operator can tell a rack that is not reporting from one that is refused.
import { Counter, type Registry } from 'prom-client';
import type { AgentAction } from './protocol.js';

/** The node-facing routes by their path under /agent/v1; any other path is `other`. */
const ROUTE_OF_PATH: Record<string, string> = { '/hello': 'hello', '/heartbeat': 'heartbeat', '/drained': 'drained' };

export class AgentMetrics {
  private readonly requests: Counter<'route' | 'outcome'>;
  private readonly actionsSent: Counter<'action'>;
  private readonly lostNodes: Counter;
  /** Every node heartbeats every interval: the accepted counters are looked up once, not per request. */
  private readonly accepted = new Map<string, Counter.Internal>();

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: 'shoal_agent_requests_total',
      help: 'Agent requests, by route (hello, heartbeat, drained, other) and outcome (accepted, or the reason it was refused, e.g. unknown-token)',
      labelNames: ['route', 'outcome'] as const,
      registers: [registry],
    });
    this.actionsSent = new Counter({
      name: 'shoal_agent_actions_sent_total',
      help: 'Replies to agents that carried an action (drain, reboot); an action is repeated until its effect is seen',
      labelNames: ['action'] as const,
      registers: [registry],
    });
    this.lostNodes = new Counter({ name: 'shoal_agent_lost_total', help: 'Times a node was observed as run=lost: its agent silent past the deadline', registers: [registry] });
  }

  /** A request accepted on `path` (relative to /agent/v1), answered with `action`. */
  answered(path: string, action: AgentAction): void {
    const route = routeOf(path);
    let counter = this.accepted.get(route);
    if (!counter) this.accepted.set(route, (counter = this.requests.labels({ route, outcome: 'accepted' })));
    counter.inc();
    if (action !== 'none') this.actionsSent.inc({ action });
  }

  /** A request refused on `path`; the reason as logged, in kebab case ('unknown token' → unknown-token). */
  refused(path: string, reason: string): void {
    this.requests.inc({ route: routeOf(path), outcome: reason.replaceAll(' ', '-') });
  }

  lost(): void {
    this.lostNodes.inc();
  }
}

const routeOf = (path: string): string => ROUTE_OF_PATH[path] ?? 'other';
