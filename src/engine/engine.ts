// Assembles the engine from the facets and modules it is given: composes the facets, lints the
// composed graph (refusing to start on a broken machine or a driver missing a step's handler), and
// routes each step to the module that owns its facet for that node. Which facets exist is the
// caller's choice (src/appliance.ts): the engine imports none.
import type { Logger } from 'pino';
import type { NodeRecord } from '../domain/node.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { NodeOwnership } from '../contracts/ownership.js';
import { Executor, type ExecutorOptions, DEFAULT_EXECUTOR_OPTIONS } from './executor.js';
import type { DesiredVocabulary } from './desired.js';
import type { FacetDefinition } from './facet.js';
import { FacetGraph } from './graph.js';
import { lintDrivers, lintGraph, type LintReport } from './lint.js';
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
  /** What an operator may desire of these facets, and the target each desired state asks for. */
  readonly desired: DesiredVocabulary;
  /** Rolling changes over groups of nodes, within a max-unavailable budget. */
  readonly rollouts: RolloutController;
  private readonly drivers: FacetDriver[];

  constructor(
    readonly state: ClusterState,
    facets: { definitions: FacetDefinition[]; desired: DesiredVocabulary },
    readonly modules: ShoalModule[],
    options: Partial<ExecutorOptions>,
    log: Logger,
    /** Which nodes this appliance acts on (several appliances on one store); without it, every node. */
    ownership?: NodeOwnership,
  ) {
    this.definitions = facets.definitions;
    this.desired = facets.desired;
    this.graph = new FacetGraph(this.definitions);
    const graphLint = lintGraph(this.graph, this.definitions);
    this.lint = { ...graphLint, problems: [...graphLint.problems, ...lintDrivers(this.graph, modules)] };
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
      (desired) => this.desired.target(desired),
      { driverFor: (node, facet) => this.driverFor(node, facet) },
      { ...DEFAULT_EXECUTOR_OPTIONS, ...options, limits: { ...DEFAULT_EXECUTOR_OPTIONS.limits, ...options.limits } },
      this.metrics,
      log.child({ component: 'executor' }),
      ownership,
    );
    this.rollouts = new RolloutController(state, this.executor, this.desired, log.child({ component: 'rollouts' }));
  }

  /** Starts planning and running nodes, then the rollouts that follow their phases. */
  start(): void {
    this.executor.start();
    this.rollouts.start();
  }

  stop(): void {
    this.rollouts.stop();
    this.executor.stop();
  }

  driverFor(node: NodeRecord, facet: string): FacetDriver | undefined {
    return this.drivers.find((d) => d.facet === facet && d.claims(node));
  }
}
