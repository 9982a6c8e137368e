// What the operator API sends and takes, in one place: the API types its replies with these, the
// CLI and the dashboard read them (the dashboard with `import type` only, so zod stays out of its
// bundle), and test/views.test.ts parses real replies with the schemas so a reply that drifts from
// them fails there. Desired and observed state are maps keyed by facet name: any registered facet
// can appear in them, not only the standard four.
import { z } from 'zod';
import { HardwareSchema } from '../contracts/hardware.js';

export type { NodeInput } from '../domain/node.js';
export type { ProfileInput, Settings } from '../domain/profile.js';

export const PhaseSchema = z.enum(['converged', 'converging', 'failed', 'frozen', 'blocked']);
export type Phase = z.infer<typeof PhaseSchema>;

export const ObservationSchema = z.strictObject({
  value: z.string(),
  /** Context that qualifies the value: the image a boot is armed for, the reason of a failure. */
  detail: z.string().optional(),
  at: z.number(),
  source: z.string(),
});
export type Observation = z.infer<typeof ObservationSchema>;

/** Per facet, the value an operator asked for; a facet left out is "don't care". */
export const DesiredViewSchema = z.partialRecord(z.string(), z.string());
export type DesiredView = z.infer<typeof DesiredViewSchema>;
/** Per facet, what a module or agent last saw. */
export const ObservedViewSchema = z.partialRecord(z.string(), ObservationSchema);
export type ObservedView = z.infer<typeof ObservedViewSchema>;
/** The body of PATCH /nodes/{ref}/desired: a value sets a facet, null clears it. */
export type DesiredPatchInput = Partial<Record<string, string | null>>;

/** A facet an operator can desire (GET /desired-facets): a list of values, or a pattern with what it means. */
export const DesirableFacetSchema = z.union([
  z.strictObject({ facet: z.string(), values: z.array(z.string()) }),
  z.strictObject({ facet: z.string(), pattern: z.string(), describe: z.string() }),
]);
export type DesirableFacet = z.infer<typeof DesirableFacetSchema>;
export const DesirableFacetListSchema = z.strictObject({ facets: z.array(DesirableFacetSchema) });
export type DesirableFacetList = z.infer<typeof DesirableFacetListSchema>;

/** The step a node is on: under way, or waiting for a concurrency slot or a retry backoff. */
export const StepStatusSchema = z.strictObject({
  name: z.string(),
  startedAt: z.number(),
  deadline: z.number(),
  attempt: z.number().int(),
  waiting: z.enum(['limit', 'backoff']).optional(),
});
export type StepStatus = z.infer<typeof StepStatusSchema>;

export const NodeViewSchema = z.strictObject({
  id: z.string(),
  name: z.string(),
  macs: z.array(z.string()),
  /** The BMC URL without its password. */
  bmc: z.string(),
  arch: z.enum(['x86_64', 'arm64']),
  firmware: z.enum(['bios', 'uefi', 'auto']),
  ipv4: z.string().optional(),
  labels: z.record(z.string(), z.string()),
  frozen: z.boolean(),
  desired: DesiredViewSchema,
  observed: ObservedViewSchema,
  phase: PhaseSchema,
  /** Why the node is failed or blocked. */
  reason: z.string().optional(),
  step: StepStatusSchema.optional(),
  lastError: z.string().optional(),
});
export type NodeView = z.infer<typeof NodeViewSchema>;

/** GET /nodes/{ref}/hardware: what the node's agent reported at its last hello that changed it. */
export const HardwareViewSchema = z.strictObject({
  node: z.string(),
  at: z.number(),
  digest: z.string(),
  hardware: HardwareSchema,
});
export type HardwareView = z.infer<typeof HardwareViewSchema>;

export const NodeListSchema = z.strictObject({
  nodes: z.array(NodeViewSchema),
  counts: z.record(PhaseSchema, z.number().int()),
  revision: z.number().int(),
});
export type NodeList = z.infer<typeof NodeListSchema>;

export const PlanStepSchema = z.strictObject({
  step: z.string(),
  facet: z.string(),
  kind: z.enum(['action', 'await']),
  /** The composed state this step is expected to lead to. */
  expect: z.record(z.string(), z.string()),
  explain: z.string(),
});
export type PlanStep = z.infer<typeof PlanStepSchema>;

export const PlanViewSchema = z.strictObject({
  node: z.string(),
  phase: PhaseSchema,
  reason: z.string().optional(),
  current: StepStatusSchema.optional(),
  failures: z.number().int(),
  lastError: z.string().optional(),
  from: z.record(z.string(), z.string()),
  /** Per facet, the values that satisfy the desired state; a facet left out is "don't care". */
  target: z.partialRecord(z.string(), z.array(z.string())),
  reachable: z.boolean(),
  steps: z.array(PlanStepSchema),
});
export type PlanView = z.infer<typeof PlanViewSchema>;

export const EventViewSchema = z.strictObject({
  rev: z.number().int(),
  at: z.number(),
  nodeId: z.string().nullable(),
  kind: z.enum(['node', 'desired', 'observed', 'secret', 'engine', 'appliance', 'rollout', 'user', 'profile']),
  facet: z.string(),
  old: z.string().nullable(),
  new: z.string().nullable(),
  detail: z.string().nullable(),
  writer: z.string(),
});
export type EventView = z.infer<typeof EventViewSchema>;

export const EventListSchema = z.strictObject({ events: z.array(EventViewSchema), revision: z.number().int() });
export type EventList = z.infer<typeof EventListSchema>;

export const FrozenViewSchema = z.strictObject({ frozen: z.boolean() });
export type FrozenView = z.infer<typeof FrozenViewSchema>;

export const InventoryImportedSchema = z.strictObject({
  imported: z.number().int(),
  nodes: z.array(z.strictObject({ id: z.string(), name: z.string() })),
});
export type InventoryImported = z.infer<typeof InventoryImportedSchema>;

export const RolloutNodeStateSchema = z.enum(['pending', 'in-progress', 'done', 'failed']);
export const RolloutStatusSchema = z.enum(['running', 'paused', 'failed', 'done', 'cancelled']);

export const RolloutViewSchema = z.strictObject({
  id: z.string(),
  status: RolloutStatusSchema,
  /** Why the rollout failed: its failed nodes and their reasons. */
  reason: z.string().optional(),
  selector: z.string(),
  desired: z.partialRecord(z.string(), z.string().nullable()),
  maxUnavailable: z.union([z.number().int(), z.string()]),
  /** maxUnavailable resolved against the group's size when the rollout was created. */
  limit: z.number().int(),
  createdAt: z.string(),
  createdBy: z.string(),
  counts: z.strictObject({ pending: z.number().int(), 'in-progress': z.number().int(), done: z.number().int(), failed: z.number().int(), total: z.number().int() }),
  /** While under way: members changed and not yet converged, or down for another reason. */
  unavailable: z.number().int().optional(),
  nodes: z.array(z.strictObject({ id: z.string(), name: z.string(), state: RolloutNodeStateSchema, reason: z.string().optional(), phase: PhaseSchema })).optional(),
  /** The event log's revision when the reply was made: follow the rollout's events from there. */
  revision: z.number().int().optional(),
});
export type RolloutView = z.infer<typeof RolloutViewSchema>;

export const RolloutListSchema = z.strictObject({ rollouts: z.array(RolloutViewSchema), revision: z.number().int() });
export type RolloutList = z.infer<typeof RolloutListSchema>;

const ImageFileSchema = z.strictObject({ sha256: z.string(), size: z.number().int(), path: z.string() });

/** An image as the images module lists it (modules/images/module.ts). */
export const ImageViewSchema = z.strictObject({
  ref: z.string(),
  name: z.string(),
  version: z.string(),
  arch: z.enum(['x86_64', 'arm64']),
  /** What a booted node reports, `sha256:` and 64 hex digits. */
  digest: z.string(),
  /** What a network boot loads; a disk-only image (an imported disk file) has neither. */
  kernel: ImageFileSchema.optional(),
  initrd: ImageFileSchema.optional(),
  rootfs: ImageFileSchema.optional(),
  /** The disk image a deploy writes (ImageDisk in src/contracts/services.ts): the file as served, and the raw disk's size and sha256. */
  disk: ImageFileSchema.extend({
    format: z.enum(['raw', 'zstd', 'gzip']),
    rawSize: z.number().int(),
    rawSha256: z.string(),
    bootEnv: z.strictObject({ offset: z.number().int(), size: z.number().int() }).optional(),
  }).optional(),
  cmdline: z.string(),
  /** Bytes of the kernel, initrd, root image and disk image files together. */
  size: z.number().int(),
  importedAt: z.string(),
  builtFrom: z.record(z.string(), z.unknown()).optional(),
  /** Names of the nodes whose desired state asks for this image. */
  nodes: z.array(z.string()),
});
export type ImageView = z.infer<typeof ImageViewSchema>;

export const ImageListSchema = z.strictObject({ images: z.array(ImageViewSchema) });
export type ImageList = z.infer<typeof ImageListSchema>;

/** A container image import (modules/images/imports.ts): queued, running, then succeeded or failed. */
export const ImportJobViewSchema = z.strictObject({
  id: z.string(),
  request: z.strictObject({ source: z.string(), name: z.string().optional(), kernelFrom: z.string().optional(), init: z.string().optional() }),
  state: z.enum(['queued', 'running', 'succeeded', 'failed']),
  queuedAt: z.string(),
  finishedAt: z.string().optional(),
  /** What the import printed, oldest first; past a few hundred lines the oldest are dropped. */
  progress: z.array(z.string()),
  /** How many lines were dropped before `progress[0]`. */
  progressFrom: z.number().int(),
  /** The stored image, once it succeeded; `created` false when the same content was already stored. */
  image: z.strictObject({ ref: z.string(), digest: z.string(), created: z.boolean() }).optional(),
  /** Why it failed: the source and the reason. */
  error: z.string().optional(),
});
export type ImportJobView = z.infer<typeof ImportJobViewSchema>;

export const ImportJobListSchema = z.strictObject({ imports: z.array(ImportJobViewSchema) });
export type ImportJobList = z.infer<typeof ImportJobListSchema>;

/** A machine that network-booted but is not in the inventory (modules/pxe/discovered.ts). */
export const DiscoveredViewSchema = z.strictObject({
  mac: z.string(),
  /** RFC 4578 client architecture, when the firmware sent one. */
  arch: z.number().int().optional(),
  firmware: z.enum(['bios', 'uefi']).optional(),
  ip: z.string().optional(),
  vendorClassId: z.string().optional(),
  hostname: z.string().optional(),
  uuid: z.string().optional(),
  relay: z.string().optional(),
  firstSeen: z.string(),
  lastSeen: z.string(),
  /** How many DHCP requests it sent; a count that keeps growing means it is still trying. */
  requests: z.number().int(),
});
export type DiscoveredView = z.infer<typeof DiscoveredViewSchema>;

export const DiscoveredListSchema = z.strictObject({ discovered: z.array(DiscoveredViewSchema) });
export type DiscoveredList = z.infer<typeof DiscoveredListSchema>;

/** One node's agent as the agent module knows it (modules/agent/module.ts). */
export const AgentViewSchema = z.strictObject({
  node: z.string(),
  lastSeenAt: z.number(),
  lost: z.boolean(),
  reports: z.number().int(),
  action: z.enum(['none', 'drain', 'reboot']),
});
export type AgentView = z.infer<typeof AgentViewSchema>;

export const AgentListSchema = z.strictObject({ agents: z.array(AgentViewSchema) });
export type AgentList = z.infer<typeof AgentListSchema>;

/** One appliance of the cluster (src/state/ownership.ts) and the lease on its nodes. */
export const ApplianceViewSchema = z.strictObject({
  name: z.string(),
  /** The provisioning networks (CIDRs) whose nodes are its own. */
  networks: z.array(z.string()),
  standbyFor: z.string().nullable(),
  /** Who acts on its nodes, since the takeover that made `epoch`, until the lease expires by the database's clock; null: no lease (SQLite). */
  lease: z.strictObject({ holder: z.string(), epoch: z.number().int(), expiresInMs: z.number().int() }).nullable(),
  /** Nodes whose home it is. */
  nodes: z.number().int(),
});
export type ApplianceView = z.infer<typeof ApplianceViewSchema>;
/** GET /appliances: the cluster's appliances, and which one answered. */
export const ApplianceListSchema = z.strictObject({ self: z.string(), appliances: z.array(ApplianceViewSchema) });
export type ApplianceList = z.infer<typeof ApplianceListSchema>;

/** An API user (src/state/users.ts); its token is never in a view, only once in UserCreated. */
export const UserViewSchema = z.strictObject({
  name: z.string(),
  role: z.enum(['viewer', 'operator', 'admin']),
  createdAt: z.string(),
  /** The writer of the event that made it: `operator:NAME`, or `appliance` for the first admin. */
  createdBy: z.string(),
});
export type UserView = z.infer<typeof UserViewSchema>;

export const UserListSchema = z.strictObject({ users: z.array(UserViewSchema) });
export type UserList = z.infer<typeof UserListSchema>;

/** The reply to POST /users: the user and its token, which the appliance shows this once and keeps only as a hash. */
export const UserCreatedSchema = UserViewSchema.extend({ token: z.string() });
export type UserCreated = z.infer<typeof UserCreatedSchema>;

/** A profile as GET /profiles/NAME answers it: its settings, who changed it last, and the nodes it reaches now. */
export const ProfileViewSchema = z.strictObject({
  name: z.string(),
  priority: z.number(),
  selector: z.string().optional(),
  nodes: z.array(z.string()),
  settings: z.record(z.string(), z.unknown()),
  updatedAt: z.string(),
  updatedBy: z.string(),
  /** Names of the nodes it reaches, by selector or by name. */
  reaches: z.array(z.string()),
});
export type ProfileView = z.infer<typeof ProfileViewSchema>;

export const ProfileListSchema = z.strictObject({ profiles: z.array(ProfileViewSchema), revision: z.number() });
export type ProfileList = z.infer<typeof ProfileListSchema>;

/** GET /nodes/NAME/config: the node's effective configuration, who set each value, its own overrides, and the digest of what it boots with. */
export const NodeConfigViewSchema = z.strictObject({
  node: z.string(),
  profiles: z.array(z.string()),
  settings: z.record(z.string(), z.unknown()),
  /** `profile:NAME` or `node`, keyed by value (`image`, `network.gateway`) or list item (`files:/etc/motd`). */
  sources: z.record(z.string(), z.string()),
  overrides: z.record(z.string(), z.unknown()),
  digest: z.string(),
});
export type NodeConfigView = z.infer<typeof NodeConfigViewSchema>;
