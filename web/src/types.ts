// The API's shapes as the dashboard reads them (src/api/app.ts is the source of truth).

export type Phase = 'converged' | 'converging' | 'failed' | 'frozen' | 'blocked';
/** What a row is coloured by: the engine's phase, or `lost` when the node's agent went silent. */
export type NodeState = Phase | 'lost';
export const NODE_STATES: readonly NodeState[] = ['converged', 'converging', 'failed', 'lost', 'frozen', 'blocked'];

export const FACETS = ['power', 'boot', 'run', 'image'] as const;
export type Facet = (typeof FACETS)[number];

export interface Observation {
  value: string;
  detail?: string;
  at: number;
  source: string;
}

/** The step a node is on: under way, or waiting for a concurrency slot or a retry backoff. */
export interface StepStatus {
  name: string;
  startedAt: number;
  deadline: number;
  attempt: number;
  waiting?: 'limit' | 'backoff';
}

export interface NodeView {
  id: string;
  name: string;
  macs: string[];
  bmc: string;
  arch: string;
  firmware: string;
  ipv4?: string;
  labels: Record<string, string>;
  frozen: boolean;
  desired: Partial<Record<string, string>>;
  observed: Partial<Record<string, Observation>>;
  phase: Phase;
  reason?: string;
  step?: StepStatus;
  lastError?: string;
}

export interface NodeList {
  nodes: NodeView[];
  counts: Record<Phase, number>;
  revision: number;
}

export interface ShoalEvent {
  rev: number;
  at: number;
  nodeId: string | null;
  kind: 'node' | 'desired' | 'observed' | 'secret' | 'engine' | 'appliance' | 'rollout';
  facet: string;
  old: string | null;
  new: string | null;
  detail: string | null;
  writer: string;
}

export interface PlanStep {
  step: string;
  facet: string;
  kind: 'action' | 'await';
  expect: Record<string, string>;
  explain: string;
}

export interface NodePlan {
  node: string;
  phase: Phase;
  reason?: string;
  current?: StepStatus;
  failures: number;
  lastError?: string;
  from: Record<string, string>;
  /** Per facet, the values that satisfy the desired state; a facet left out is "don't care". */
  target: Partial<Record<string, string[]>>;
  reachable: boolean;
  steps: PlanStep[];
}

export interface DesiredPatch {
  power?: 'on' | 'off' | null;
  boot?: 'network' | 'disk' | null;
  run?: 'ready' | null;
  image?: string | null;
}

/** An image as `GET /api/v1/images` lists it (modules/images/module.ts). */
export interface ImageView {
  ref: string;
  name: string;
  version: string;
  arch: 'x86_64' | 'arm64';
  /** What a booted node reports, `sha256:` and 64 hex digits. */
  digest: string;
  /** Bytes of the kernel, initrd and root image together. */
  size: number;
  importedAt?: string;
  /** Names of the nodes whose desired state asks for this image. */
  nodes: string[];
}

/** A machine that network-booted but is not in the inventory (modules/pxe/discovered.ts). */
export interface DiscoveredMachine {
  mac: string;
  /** RFC 4578 client architecture, when the firmware sent one. */
  arch?: number;
  firmware?: 'bios' | 'uefi';
  ip?: string;
  vendorClassId?: string;
  hostname?: string;
  uuid?: string;
  relay?: string;
  firstSeen: string;
  lastSeen: string;
  requests: number;
}

/** The body of `POST /api/v1/nodes` (src/domain/node.ts NodeInputSchema). */
export interface NodeInput {
  name: string;
  macs: string[];
  bmc: string;
  bmcPassword?: string;
  arch?: 'x86_64' | 'arm64';
  firmware?: 'bios' | 'uefi' | 'auto';
  ipv4?: string;
  labels?: Record<string, string>;
}
