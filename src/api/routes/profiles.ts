// Profiles (src/state/profiles.ts): list, show, create or replace, remove; and a node's effective
// configuration (its profiles merged, then its own overrides, with who set each value) and those
// overrides. Profiles and node configuration may hold secrets in user-data, so reading them needs
// an operator (../roles.ts).
import type express from 'express';
import type { NodeRecord } from '../../domain/node.js';
import type { ProfileDirectory, ProfileEntry } from '../../state/profiles.js';
import type { NodeConfigView, ProfileList, ProfileView } from '../views.js';
import { writerOf, type RouteContext } from './context.js';

export function registerProfileRoutes(api: express.Router, { state, profiles }: RouteContext): void {
  api.get('/profiles', (_req, res) => {
    const list: ProfileList = { profiles: profiles.list().map((e) => profileView(profiles, e)), revision: state.revision };
    res.json(list);
  });

  api.get('/profiles/:name', (req, res) => {
    res.json(profileView(profiles, profiles.get(req.params.name)));
  });

  api.put('/profiles/:name', async (req, res) => {
    const { entry, created } = await profiles.put(req.params.name, req.body, writerOf(req));
    res.status(created ? 201 : 200).location(`/api/v1/profiles/${entry.profile.name}`).json(profileView(profiles, entry));
  });

  api.delete('/profiles/:name', async (req, res) => {
    await profiles.remove(req.params.name, writerOf(req));
    res.status(204).end();
  });

  api.get('/nodes/:ref/config', (req, res) => {
    res.json(nodeConfigView(profiles, state.resolve(req.params.ref)));
  });

  api.put('/nodes/:ref/config', async (req, res) => {
    const node = state.resolve(req.params.ref);
    await profiles.setOverrides(node, req.body, writerOf(req));
    res.json(nodeConfigView(profiles, node));
  });
}

function profileView(profiles: ProfileDirectory, { profile, updatedAt, updatedBy }: ProfileEntry): ProfileView {
  return {
    name: profile.name,
    priority: profile.priority,
    ...(profile.selector !== undefined ? { selector: profile.selector } : {}),
    nodes: profile.nodes,
    settings: profile.settings,
    updatedAt: new Date(updatedAt).toISOString(),
    updatedBy,
    reaches: profiles.reaches(profile),
  };
}

function nodeConfigView(profiles: ProfileDirectory, node: NodeRecord): NodeConfigView {
  const config = profiles.effective(node);
  return { node: node.name, profiles: config.profiles, settings: config.settings, sources: config.sources, overrides: profiles.overridesOf(node.id), digest: profiles.seed(node).digest };
}
