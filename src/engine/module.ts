// The contract between the engine and a hardware module. A module owns facets of the nodes it
// claims: it performs their steps and reports what it observes. It never writes desired state.
import type { Router } from 'express';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { FacetName, NodeId, NodeRecord } from '../domain/node.js';
import type { DesiredState, ObservedState } from '../domain/state.js';
import type { FacetDefinition, StepName } from './facet.js';
import type { ServiceRegistry } from '../contracts/services.js';

export interface StepRequest {
  step: StepName;
  node: NodeRecord;
  desired: DesiredState;
  /** The node's BMC password, for modules that talk to its BMC. */
  bmcPassword: string | undefined;
  /** Aborted when the step ends (confirmed, superseded, failed, timed out) or the appliance stops. */
  signal: AbortSignal;
}

/**
 * Starts a step. Resolving means the command was accepted, not that the step is done: the step is
 * done when the module observes one of its confirming values. Rejecting fails the step with the
 * error's message as the reason an operator reads.
 */
export type StepHandler = (request: StepRequest) => Promise<void>;

export interface FacetDriver {
  facet: FacetName;
  /** Whether this driver owns the facet for that node (e.g. by BMC scheme). */
  claims(node: NodeRecord): boolean;
  /** A handler for each action step of the facet (await steps have none: nothing is fired). The start-up lint checks the set. */
  steps: Partial<Record<StepName, StepHandler>>;
}

/**
 * The handlers of one facet's steps, picked from a module's handlers by the step-naming convention
 * `<facet>.<verb>` (for a module that drives several facets); the lint checks the result.
 */
export function stepsOf(facet: FacetName, handlers: Record<StepName, StepHandler>): Partial<Record<StepName, StepHandler>> {
  return Object.fromEntries(Object.entries(handlers).filter(([step]) => step.startsWith(`${facet}.`)));
}

/** What a module sees of the appliance. */
export interface ModuleHost {
  nodes(): NodeRecord[];
  node(id: NodeId): NodeRecord | undefined;
  byMac(mac: string): NodeRecord | undefined;
  desired(id: NodeId): DesiredState;
  observed(id: NodeId): ObservedState;
  bmcPassword(id: NodeId): string | undefined;
  /** Records an observation; repeating the current value writes nothing. */
  observe(id: NodeId, facet: FacetName, value: string, detail?: string): void;
  /** Subscribes to changes of any node (desired, observed, inventory). */
  onNodeChange(listener: (id: NodeId) => void): () => void;
  log: Logger;
  dataDir: string;
  /** Routes this module serves to nodes, mounted at the appliance's root, without operator auth. */
  http: Router;
  /** Operator routes, mounted under /api/v1 behind the bearer token (e.g. /api/v1/images). */
  api: Router;
  /** Services modules provide to each other (image catalog, boot tokens). */
  services: ServiceRegistry;
  /** The appliance's Prometheus registry, served at /metrics; a module registers its own metrics here. */
  metrics: Registry;
}

export interface ShoalModule {
  name: string;
  /** Facets beyond the standard ones that this module declares. */
  facets?: FacetDefinition[];
  drivers?: FacetDriver[];
  /**
   * OpenAPI path items of the operator routes the module serves on `host.api`, keyed by their path
   * under /api/v1 (e.g. `/images/{ref}`); merged into /api/v1/openapi.json. `#/components/schemas/Problem`
   * is there to refer to.
   */
  openapi?: Record<string, Record<string, unknown>>;
  start?(host: ModuleHost): Promise<void> | void;
  stop?(): Promise<void> | void;
}
