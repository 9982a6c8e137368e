// The OpenAPI document of /api/v1, with request bodies generated from the same zod schemas that
// validate them, so the document cannot drift from what the API accepts. Each operation names the
// role it needs (`x-shoal-role`), read from the same route table (roles.ts) that enforces it.
import { z } from 'zod';
import { NodeInputSchema } from '../domain/node.js';
import { ProfileInputSchema, SettingsSchema } from '../domain/profile.js';
import type { DesiredVocabulary } from '../engine/desired.js';
import { rolloutInputSchema } from '../engine/rollout.js';
import { ROLES } from '../state/users.js';
import { requiredRole } from './roles.js';
import { ApplianceListSchema } from './views.js';

const problem = { description: 'An error, as application/problem+json', content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } };
const ok = (description: string) => ({ description, content: { 'application/json': { schema: { type: 'object' } } } });
const nodeRef = { name: 'ref', in: 'path', required: true, description: 'node id or name', schema: { type: 'string' } };
const rolloutId = { name: 'id', in: 'path', required: true, description: 'rollout id, e.g. ro-1', schema: { type: 'string' } };
const rollout = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Rollout' } } } });
const rolloutAction = (summary: string) => ({ summary, parameters: [rolloutId], responses: { 200: rollout('the rollout'), 401: problem, 404: problem, 409: problem } });
const profileName = { name: 'name', in: 'path', required: true, description: 'profile name', schema: { type: 'string' } };
const user = (description: string, schema: string) => ({ description, content: { 'application/json': { schema: { $ref: `#/components/schemas/${schema}` } } } });

/** The shared pieces a module's path items use. */
export const openApiParts = {
  problem,
  ok,
  path: (name: string, description: string) => ({ name, in: 'path', required: true, description, schema: { type: 'string' } }),
};

export function openApiDocument(desired: DesiredVocabulary, modulePaths: Record<string, Record<string, unknown>> = {}): Record<string, unknown> {
  const document = baseDocument(desired, modulePaths);
  document.paths = Object.fromEntries(
    Object.entries(document.paths).map(([path, item]) => [
      path,
      Object.fromEntries(
        Object.entries(item).map(([method, op]) => {
          const role = requiredRole(method, path.replace(/\{[^}]+\}/g, 'x'));
          const responses = { ...(op.responses as Record<string, unknown>), 403: problem };
          return [method, { ...op, 'x-shoal-role': role, responses }];
        }),
      ),
    ]),
  );
  return document;
}

function baseDocument(desired: DesiredVocabulary, modulePaths: Record<string, Record<string, unknown>>): { paths: Record<string, Record<string, Record<string, unknown>>> } & Record<string, unknown> {
  const nodeOp = (summary: string, extra: Record<string, unknown> = {}) => ({
    summary,
    parameters: [nodeRef],
    responses: { 200: ok(summary), 401: problem, 404: problem },
    ...extra,
  });
  return {
    openapi: '3.1.0',
    info: { title: 'Shoal appliance API', version: '1' },
    servers: [{ url: '/api/v1' }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: `a user's token (POST /users, shoal user add), or the first admin's in the data directory, file api-token. Roles, each allowed what the ones before it are: ${ROLES.join(', ')}; each operation's x-shoal-role is the role it needs (403 otherwise)`,
        },
      },
      schemas: {
        NodeInput: z.toJSONSchema(NodeInputSchema, { io: 'input' }),
        DesiredPatch: z.toJSONSchema(desired.patchSchema, { io: 'input' }),
        RolloutInput: z.toJSONSchema(rolloutInputSchema(desired), { io: 'input' }),
        Rollout: {
          type: 'object',
          properties: {
            id: { type: 'string' },
            status: { enum: ['running', 'paused', 'failed', 'done', 'cancelled'] },
            reason: { type: 'string', description: 'why it failed: its failed nodes and their reasons' },
            selector: { type: 'string' },
            desired: { $ref: '#/components/schemas/DesiredPatch' },
            maxUnavailable: { oneOf: [{ type: 'integer' }, { type: 'string' }] },
            limit: { type: 'integer', description: 'maxUnavailable resolved against the group size' },
            createdAt: { type: 'string', format: 'date-time' },
            createdBy: { type: 'string' },
            counts: { type: 'object', properties: { pending: { type: 'integer' }, 'in-progress': { type: 'integer' }, done: { type: 'integer' }, failed: { type: 'integer' }, total: { type: 'integer' } } },
            unavailable: { type: 'integer', description: 'while under way: nodes of the group changed and not yet converged, or down for another reason' },
            nodes: {
              type: 'array',
              description: 'in rollout order (by name); left out of lists',
              items: {
                type: 'object',
                properties: {
                  id: { type: 'string' },
                  name: { type: 'string' },
                  state: { enum: ['pending', 'in-progress', 'done', 'failed'] },
                  reason: { type: 'string' },
                  phase: { enum: ['converged', 'converging', 'failed', 'frozen', 'blocked'] },
                },
              },
            },
          },
        },
        ProfileInput: z.toJSONSchema(ProfileInputSchema, { io: 'input' }),
        Settings: z.toJSONSchema(SettingsSchema, { io: 'input' }),
        UserInput: {
          type: 'object',
          required: ['name', 'role'],
          additionalProperties: false,
          properties: { name: { type: 'string', pattern: '^[a-z][a-z0-9._-]{0,31}$' }, role: { enum: [...ROLES] } },
        },
        User: {
          type: 'object',
          properties: { name: { type: 'string' }, role: { enum: [...ROLES] }, createdAt: { type: 'string', format: 'date-time' }, createdBy: { type: 'string' } },
        },
        UserCreated: {
          allOf: [{ $ref: '#/components/schemas/User' }, { type: 'object', properties: { token: { type: 'string', description: 'the bearer token, shown only in this reply: the appliance keeps its SHA-256' } } }],
        },
        Problem: {
          type: 'object',
          properties: { type: { type: 'string' }, title: { type: 'string' }, status: { type: 'integer' }, detail: { type: 'string' }, errors: { type: 'array' } },
        },
      },
    },
    paths: {
      ...modulePaths,
      '/nodes': {
        get: {
          summary: 'List nodes with their phase; filter by label selector and phase',
          parameters: [
            { name: 'selector', in: 'query', schema: { type: 'string' }, description: 'e.g. rack=r1,role!=login' },
            { name: 'phase', in: 'query', schema: { enum: ['converged', 'converging', 'failed', 'frozen', 'blocked'] } },
          ],
          responses: { 200: ok('nodes and counts per phase'), 400: problem, 401: problem },
        },
        post: {
          summary: 'Enroll a node',
          requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/NodeInput' } } } },
          responses: { 201: ok('the node'), 400: problem, 401: problem, 409: problem },
        },
      },
      '/nodes/{ref}': {
        get: nodeOp('A node: inventory, desired, observed, phase, current step'),
        put: nodeOp('Replace a node\'s inventory record', { requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/NodeInput' } } } } }),
        delete: { summary: 'Remove a node', parameters: [nodeRef], responses: { 204: { description: 'removed' }, 401: problem, 404: problem } },
      },
      '/nodes/{ref}/desired': {
        get: nodeOp('Desired state'),
        patch: nodeOp('Change desired state (null clears a facet)', { requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/DesiredPatch' } } } } }),
      },
      '/nodes/{ref}/observed': { get: nodeOp('Observed state, facet by facet, with source and time') },
      '/nodes/{ref}/hardware': { get: nodeOp('The hardware the node\'s agent reported at its last hello: system, CPU, memory, disks') },
      '/nodes/{ref}/plan': { get: nodeOp('The node\'s current plan with an explanation of each step') },
      '/nodes/{ref}/retry': { post: nodeOp('Release a node held as failed, with a fresh retry budget') },
      '/nodes/{ref}/freeze': { post: nodeOp('Put a node in maintenance: no new steps') },
      '/nodes/{ref}/thaw': { post: nodeOp('End a node\'s maintenance') },
      '/freeze': { post: { summary: 'Freeze the whole appliance', responses: { 200: ok('frozen'), 401: problem } } },
      '/thaw': { post: { summary: 'Thaw the whole appliance', responses: { 200: ok('thawed'), 401: problem } } },
      '/rollouts': {
        get: { summary: 'Rollouts, newest last, without their node lists', responses: { 200: ok('rollouts'), 401: problem } },
        post: {
          summary: 'Start a rolling change: apply a desired patch to the nodes a label selector picks, at most maxUnavailable of them unavailable at a time',
          description:
            'A node is unavailable from its desired change until the engine calls it converged; nodes of the group already not converged count too. A node held as failed fails the rollout. 422 when the selector matches no node or the patch cannot apply to a node; 409 when a selected node is in another rollout under way.',
          requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/RolloutInput' } } } },
          responses: { 201: rollout('the rollout, with its nodes, and the event revision its records follow'), 400: problem, 401: problem, 409: problem, 422: problem },
        },
      },
      '/rollouts/{id}': { get: { summary: 'A rollout: status, counts, each node\'s state and engine phase', parameters: [rolloutId], responses: { 200: rollout('the rollout'), 401: problem, 404: problem } } },
      '/rollouts/{id}/pause': { post: rolloutAction('Pause a running rollout: nodes under way finish, no new node starts') },
      '/rollouts/{id}/resume': { post: rolloutAction('Resume a paused or failed rollout (its failed nodes released first, e.g. POST /nodes/{ref}/retry)') },
      '/rollouts/{id}/cancel': { post: rolloutAction('Cancel a rollout for good: nodes not started keep their desired state') },
      '/profiles': { get: { summary: 'Profiles, by name, each with the nodes it reaches', responses: { 200: ok('profiles'), 401: problem } } },
      '/profiles/{name}': {
        get: { summary: 'A profile: its selector, the nodes it names, its settings, who changed it last, the nodes it reaches', parameters: [profileName], responses: { 200: ok('the profile'), 401: problem, 404: problem } },
        put: {
          summary: 'Create (201) or replace (200) a profile',
          description:
            'Its templates (files, user-data, hostname) are rendered for every node it reaches, or for a sample node with the labels its selector asks for when it reaches none; an unknown variable or filter, a syntax error, or user-data that is not cloud-config is a 400 naming the profile, the file and the line, and nothing is saved.',
          parameters: [profileName],
          requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/ProfileInput' } } } },
          responses: { 200: ok('the profile, replaced'), 201: ok('the profile, created'), 400: problem, 401: problem },
        },
        delete: { summary: 'Remove a profile: the nodes it reached lose what it set', parameters: [profileName], responses: { 204: { description: 'removed' }, 401: problem, 404: problem } },
      },
      '/nodes/{ref}/config': {
        get: nodeOp("The node's effective configuration: its profiles merged by priority then name, then its own overrides; who set each value; the digest of what it boots with"),
        put: nodeOp("Replace the node's own overrides (an empty object clears them); 400 when its configuration would not render", {
          requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/Settings' } } } },
          responses: { 200: ok('the effective configuration'), 400: problem, 401: problem, 404: problem },
        }),
      },
      '/desired-facets': { get: { summary: 'The facets an operator can desire, each with the values or the pattern it accepts', responses: { 200: ok('desirable facets'), 401: problem } } },
      '/graph': { get: { summary: 'The composed facet graph: facets, steps, edges, lint', responses: { 200: ok('graph'), 401: problem } } },
      '/events': {
        get: {
          summary: 'The event log after a revision',
          parameters: [
            { name: 'after', in: 'query', schema: { type: 'integer', minimum: 0 } },
            { name: 'node', in: 'query', schema: { type: 'string' } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 10000 } },
          ],
          responses: { 200: ok('events'), 400: problem, 401: problem },
        },
      },
      '/events/stream': {
        get: {
          summary: 'Live events as server-sent events; resumable with Last-Event-ID',
          responses: { 200: { description: 'text/event-stream', content: { 'text/event-stream': {} } }, 401: problem },
        },
      },
      '/inventory': {
        get: { summary: 'Export the inventory as YAML (no secrets)', responses: { 200: { description: 'YAML', content: { 'application/yaml': {} } }, 401: problem } },
        post: {
          summary: 'Import an inventory file: all rows or none; bad rows are reported with their line',
          requestBody: { required: true, content: { 'application/yaml': { schema: { type: 'string' } } } },
          responses: { 201: ok('imported'), 400: problem, 401: problem, 409: problem },
        },
      },
      '/appliances': {
        get: {
          summary: 'The appliances sharing this cluster: networks, standby, the lease on their nodes (holder, epoch, expires in), node count',
          responses: { 200: { description: 'appliances', content: { 'application/json': { schema: z.toJSONSchema(ApplianceListSchema) } } }, 401: problem },
        },
      },
      '/users': {
        get: { summary: 'API users and their roles (never their tokens)', responses: { 200: ok('users'), 401: problem } },
        post: {
          summary: 'Add a user with a role; the reply holds its token, shown this once',
          requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/UserInput' } } } },
          responses: { 201: user('the user and its token', 'UserCreated'), 400: problem, 401: problem, 409: problem },
        },
      },
      '/users/{name}': {
        delete: {
          summary: 'Remove a user: its token is refused from now on. The last admin cannot be removed (409)',
          parameters: [{ name: 'name', in: 'path', required: true, description: 'user name', schema: { type: 'string' } }],
          responses: { 204: { description: 'removed' }, 401: problem, 404: problem, 409: problem },
        },
      },
    },
  };
}
