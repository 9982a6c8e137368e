// Assembles the engine from the registered modules: composes their facets with the standard ones,
// lints the composed graph (refusing to start on a broken machine), and routes each step to the
// module that owns its facet for that node.
import type { Logger } from 'pino';
import type { NodeRecord } from '../domain/node.js';
import type { ClusterState } from '../state/cluster-state.js';
import { standardFacets, standardTarget } from '../facets/standard.js';
import { Executor, type ExecutorOptions, DEFAULT_EXECUTOR_OPTIONS } from './executor.js';
import type { FacetDefinition } from './facet.js';
import { FacetGraph } from './graph.js';
import { lintGraph, type LintReport } from './lint.js';
import { EngineMetrics } from './metrics.js';
import type { FacetDriver, ShoalModule } from './module.js';
import { Planner } from './planner.js';
import { RolloutController } from './rollout.js';

export class Engine {
  readonly graph: FacetGraph;
  readonly planner: Planner;
  readonly executor: Executor;
  readonly metrics: EngineMetrics;
  readonly lint: LintReport;
  readonly definitions: FacetDefinition[];
  /** Rolling changes over groups of nodes, within a max-unavailable budget. */
  readonly rollouts: RolloutController;
  private readonly drivers: FacetDriver[];

  constructor(
    readonly state: ClusterState,
    readonly modules: ShoalModule[],
    options: Partial<ExecutorOptions>,
    log: Logger,
  ) {
    this.definitions = [...standardFacets, ...modules.flatMap((m) => m.facets ?? [])];
    this.graph = new FacetGraph(this.definitions);
    this.lint = lintGraph(this.graph, this.definitions);
    if (this.lint.problems.length > 0) {
      throw new Error(`the composed facet graph is unsound:\n  ${this.lint.problems.join('\n  ')}`);
    }
    this.planner = new Planner(this.graph);
    // Earlier modules win a facet they both claim: configuration order is priority.
    this.drivers = modules.flatMap((m) => m.drivers ?? []);
    this.metrics = new EngineMetrics(() => this.executor.phaseCounts());
    this.executor = new Executor(
      state,
      this.graph,
      this.planner,
      this.definitions,
      standardTarget,
      { driverFor: (node, facet) => this.driverFor(node, facet) },
      { ...DEFAULT_EXECUTOR_OPTIONS, ...options, limits: { ...DEFAULT_EXECUTOR_OPTIONS.limits, ...options.limits } },
      this.metrics,
      log.child({ component: 'executor' }),
    );
    this.rollouts = new RolloutController(state, this.executor, log.child({ component: 'rollouts' }));
  }

  driverFor(node: NodeRecord, facet: string): FacetDriver | undefined {
    return this.drivers.find((d) => d.facet === facet && d.claims(node));
  }
}
