// Prometheus metrics of the engine, on a registry of its own so that several appliances (tests)
// can live in one process.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class EngineMetrics {
  readonly registry = new Registry();
  readonly plans = new Counter({ name: 'shoal_plans_total', help: 'Plans computed for nodes', registers: [this.registry] });
  readonly steps = new Counter({
    name: 'shoal_steps_total',
    help: 'Plan steps finished, by step and outcome (confirmed, superseded, failed, timeout)',
    labelNames: ['step', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly stepSeconds = new Histogram({
    name: 'shoal_step_duration_seconds',
    help: 'Time from starting a step to its outcome',
    labelNames: ['step', 'outcome'] as const,
    buckets: [0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
    registers: [this.registry],
  });
  readonly actionsInFlight = new Gauge({
    name: 'shoal_actions_in_flight',
    help: 'Module actions started and not yet returned, by step',
    labelNames: ['step'] as const,
    registers: [this.registry],
  });
  readonly nodes: Gauge<'phase'>;

  constructor(phaseCounts: () => Record<string, number>) {
    this.nodes = new Gauge({
      name: 'shoal_nodes',
      help: 'Nodes by phase (converged, converging, failed, frozen, blocked)',
      labelNames: ['phase'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [phase, n] of Object.entries(phaseCounts())) this.set({ phase }, n);
      },
    });
  }
}
