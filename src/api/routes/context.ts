// What every route group of the operator API works with: the cluster state and engine, the view of
// a node they all answer with, and how a request names its writer and its query.
import type { Request } from 'express';
import { formatBmcUrl, type NodeRecord } from '../../domain/node.js';
import type { Engine } from '../../engine/engine.js';
import type { ClusterState } from '../../state/cluster-state.js';
import type { ProfileDirectory } from '../../state/profiles.js';
import { userOf } from '../auth.js';
import type { NodeView } from '../views.js';

export interface RouteContext {
  state: ClusterState;
  engine: Engine;
  profiles: ProfileDirectory;
}

export function nodeViewOf({ state, engine }: RouteContext, node: NodeRecord): NodeView {
  const status = engine.executor.status(node.id);
  return {
    id: node.id,
    name: node.name,
    macs: node.macs,
    bmc: formatBmcUrl(node.bmc),
    arch: node.arch,
    firmware: node.firmware,
    ...(node.ipv4 ? { ipv4: node.ipv4 } : {}),
    labels: node.labels,
    frozen: state.isFrozen(node.id),
    desired: state.desired(node.id),
    observed: state.observed(node.id),
    phase: status.phase,
    ...(status.reason ? { reason: status.reason } : {}),
    ...(status.step ? { step: status.step } : {}),
    ...(status.lastError ? { lastError: status.lastError } : {}),
  };
}

/** The query without the token, so strict schemas still catch misspelt parameters. */
export function queryOf(req: Request): Record<string, unknown> {
  const { access_token: _token, ...rest } = req.query as Record<string, unknown>;
  return rest;
}

/** The writer of the events a request makes: the user its token belongs to. */
export function writerOf(req: Request): string {
  return `operator:${userOf(req).name}`;
}
